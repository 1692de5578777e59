"""Entry point of the built-in engine process (the logic lives in :mod:`.builtin`).

    python -m modelfleet.engines.builtin_server --model PATH --port P [--host 127.0.0.1]
        [--served-model-name NAME] [--task auto|chat|embed|rerank]
        [--device auto|cpu|cuda] [--dtype auto|float32|float16|bfloat16]
        [--max-concurrency 4] [--max-model-len N]

Exit code 0 after a graceful stop (SIGTERM, SIGINT, parent gone), 1 when the model cannot
be loaded, 2 on bad arguments, 3 when the port cannot be bound (uvicorn's startup failure).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# Before anything imports huggingface_hub: this process never downloads a model.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from modelfleet.engines.builtin.config import DEVICES, DTYPES, TASKS, EngineArgs  # noqa: E402


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet.engines.builtin_server",
        description="Serve one local model over an OpenAI-compatible HTTP API.",
    )
    parser.add_argument("--model", required=True, help="local model directory")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--served-model-name",
        default=None,
        help="name reported in responses (default: the directory's name)",
    )
    parser.add_argument("--task", choices=TASKS, default="auto")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument(
        "--max-concurrency",
        type=_positive,
        default=4,
        help="requests decoded at once (worker threads)",
    )
    parser.add_argument(
        "--max-model-len",
        type=_positive,
        default=None,
        help="context length (default: the model config's)",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> EngineArgs:
    ns = build_parser().parse_args(argv)
    if not os.path.isdir(ns.model):
        build_parser().error(f"--model {ns.model!r} is not a directory")
    if not 0 <= ns.port <= 65535:
        build_parser().error(f"--port {ns.port} is out of range")
    return EngineArgs(
        model=os.path.abspath(ns.model),
        port=ns.port,
        host=ns.host,
        served_model_name=ns.served_model_name,
        task=ns.task,
        device=ns.device,
        dtype=ns.dtype,
        max_concurrency=ns.max_concurrency,
        max_model_len=ns.max_model_len,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from modelfleet.engines.builtin.server import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
