"""Engine arguments, and how the task, device and dtype are resolved from them.

Nothing here imports torch at module level: ``builtin_server --help`` and the
task detection must stay fast and work where torch is absent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelfleet.engines.tasks import Task, detect_task, read_json

if TYPE_CHECKING:
    import torch

__all__ = ["Task", "detect_task"]
TASKS: tuple[str, ...] = ("auto", "chat", "embed", "rerank")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
DTYPES: tuple[str, ...] = ("auto", "float32", "float16", "bfloat16")

# Bodies above this are refused with 413 before being parsed.
MAX_BODY_BYTES = 4 * 1024 * 1024
# The default completion length when a request names none (capped by the context left).
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class EngineArgs:
    """What the command line says; validated by argparse, resolved by :func:`resolve`."""

    model: str
    port: int
    host: str = "127.0.0.1"
    served_model_name: str | None = None
    task: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    max_concurrency: int = 4
    max_model_len: int | None = None

    @property
    def name(self) -> str:
        """The model name responses report: the served name, else the directory's basename."""
        return self.served_model_name or Path(self.model.rstrip("/")).name or self.model


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda``: auto picks CUDA when torch sees a GPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device")
    return device


def resolve_dtype(dtype: str, device: str, model_dir: str) -> torch.dtype:
    """The weights' dtype: float32 on CPU by default (half precision is slow there);
    on GPU the checkpoint's own half dtype, else bfloat16 where supported, else float16."""
    import torch

    if dtype != "auto":
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
            dtype
        ]
    if device == "cpu":
        return torch.float32
    config = read_json(Path(model_dir) / "config.json")
    declared = config.get("dtype") or config.get("torch_dtype")
    if declared in ("float16", "bfloat16"):
        return getattr(torch, declared)
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def configure_torch_threads(max_concurrency: int) -> int:
    """Size torch's intra-op pool for this box and return the count.

    Up to ``max_concurrency`` requests decode at once, one per worker thread, each using
    the intra-op pool; the cores are shared out between them (at least one each, at most
    eight) because oversubscribing is much worse than idling: on a 2-core box a tiny model
    decodes ~10x slower with two intra-op threads per worker than with one. Inter-op
    parallelism buys nothing for single-sequence decoding, so it is kept to one thread.
    """
    import torch

    cores = os.cpu_count() or 1
    threads = max(1, min(8, cores // max(1, max_concurrency)))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        # Only settable before the first parallel op; a second call (tests) is harmless.
        pass
    return threads
