"""SGLang, launched as ``python -m sglang.launch_server``; ready when ``GET /health`` is 200.

Checked against the SGLang server arguments reference
(https://docs.sglang.io/advanced_features/server_arguments.html, sgl-project/sglang main
docs/advanced_features/server_arguments.md), docs/advanced_features/pd_disaggregation.md,
docs/advanced_features/epd_disaggregation.md, the rerank models page and
python/sglang/srt/observability/metrics_collector.py.

One instance on port 9001 with a two-GPU profile::

    CUDA_VISIBLE_DEVICES=0,1 python -m sglang.launch_server --model-path /models/qwen \\
        --host 127.0.0.1 --port 9001 --served-model-name qwen --enable-metrics --tp-size 2

Roles of disaggregated serving::

    pd       nothing added
    prefill  --disaggregation-mode prefill --disaggregation-bootstrap-port <derived>
    decode   --disaggregation-mode decode
    encode   --encoder-only (its language-only peers need --encoder-urls from args)

The transfer backend is SGLang's default (mooncake) unless args set
``disaggregation_transfer_backend: nixl``. A P/D router sends the same body to both
instances with ``bootstrap_host``/``bootstrap_port``/``bootstrap_room`` added
(``with_bootstrap``); the prefill's bootstrap port is ``SGLangAdapter.bootstrap_port``.
Embedding and cross-encoder rerank models run with ``--is-embedding``. ``/health`` and
``/metrics`` stay open when ``--api-key`` is set.

Knob read from ``args`` and never passed as is: ``lora_modules`` ({name: path} or
["name=path"]) becomes ``--lora-paths name=path ...`` (which also enables LoRA).
"""

from __future__ import annotations

import importlib.util
import secrets
import sys
from typing import Any, ClassVar

from modelfleet.engines.base import (
    CHAT,
    COMPLETION,
    EMBEDDING,
    RERANK,
    RESERVED,
    EngineAdapter,
    LaunchSpec,
    cuda_devices,
    flag_args,
    lora_specs,
    merged_args,
    side_port,
)
from modelfleet.engines.tasks import detect_task
from modelfleet.errors import ConfigError
from modelfleet.settings import ModelConfig, Profile

ROLES = ("pd", "prefill", "decode", "encode")
# SGLang's default bootstrap port is the fixed 8998: two prefill instances on one host
# would collide, so it is derived from the HTTP port instead.
BOOTSTRAP_PORT_OFFSET = 1000
_PARALLEL = ("tp_size", "tensor_parallel_size", "dp_size", "data_parallel_size",
             "pp_size", "pipeline_parallel_size")

# Prometheus names on GET /metrics (served only with --enable-metrics, set by default).
METRICS: dict[str, str] = {
    "requests_running": "sglang:num_running_reqs",
    "requests_waiting": "sglang:num_queue_reqs",
    "kv_cache_usage": "sglang:token_usage",
    "prefix_cache_hit_rate": "sglang:cache_hit_rate",
    "generation_throughput": "sglang:gen_throughput",
    "prompt_tokens": "sglang:prompt_tokens_total",
    "generation_tokens": "sglang:generation_tokens_total",
    "ttft_seconds": "sglang:time_to_first_token_seconds",
    "itl_seconds": "sglang:inter_token_latency_seconds",
    "e2e_seconds": "sglang:e2e_request_latency_seconds",
}


class SGLangAdapter(EngineAdapter):
    name = "sglang"
    metrics: ClassVar[dict[str, str]] = METRICS
    supports_profiling = True

    def executable(self) -> list[str]:
        # SGLang documents the module form; it must be importable by this interpreter.
        return [sys.executable, "-m", "sglang.launch_server"]

    def installed(self) -> bool:
        return importlib.util.find_spec("sglang") is not None

    def task(self, cfg: ModelConfig) -> str:
        return detect_task(cfg.model) if cfg.task == "auto" else cfg.task

    def bootstrap_port(self, cfg: ModelConfig, port: int, profile: Profile | None = None) -> int:
        """The port a prefill instance on HTTP ``port`` runs its KV bootstrap server on."""
        args = {**cfg.args, **(profile.args if profile else {})}
        default = side_port(port, BOOTSTRAP_PORT_OFFSET)
        return int(args.get("disaggregation_bootstrap_port", default))

    def launch(
        self, cfg: ModelConfig, host: str, port: int, profile: Profile | None, role: str = "pd"
    ) -> LaunchSpec:
        if role not in ROLES:
            raise ConfigError(f"sglang: unknown role {role!r} (expected one of {ROLES})")
        user = merged_args(cfg, profile, "sglang", (*RESERVED, "model_path"))
        lora = user.pop("lora_modules", None)
        defaults: dict[str, Any] = {"enable_metrics": True}
        env: dict[str, str] = {}
        gpus = cuda_devices(profile)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
            if len(gpus) > 1 and not any(k in user for k in _PARALLEL):
                defaults["tp_size"] = len(gpus)
        if self.task(cfg) in ("embed", "rerank"):
            defaults["is_embedding"] = True
        if lora:
            defaults["lora_paths"] = lora_specs(lora)
        if role in ("prefill", "decode"):
            defaults["disaggregation_mode"] = role
        if role == "prefill":
            defaults["disaggregation_bootstrap_port"] = self.bootstrap_port(cfg, port, profile)
        if role == "encode":
            defaults["encoder_only"] = True
        args = {**defaults, **user}  # the user's values win, in the defaults' places
        argv = [*self.executable(), "--model-path", cfg.model, "--host", host,
                "--port", str(port), "--served-model-name", cfg.name]
        if cfg.api_key:
            argv += ["--api-key", cfg.api_key]
        return LaunchSpec(argv=argv + flag_args(args), env=env)

    def capabilities(self, cfg: ModelConfig) -> set[str]:
        task = self.task(cfg)
        if task == "embed":
            return {EMBEDDING}
        if task == "rerank":
            return {RERANK}
        return {CHAT, COMPLETION}


def with_bootstrap(
    body: dict[str, Any], prefill_host: str, bootstrap_port: int, room: int | None = None
) -> dict[str, Any]:
    """``body`` as both halves of a P/D pair receive it: the prefill's bootstrap address
    and a random room (the transfer's id), one per prompt when ``prompt`` is a list."""
    room = secrets.randbits(62) if room is None else room
    prompt = body.get("prompt", body.get("text"))
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        n = len(prompt)
        return {**body, "bootstrap_host": [prefill_host] * n,
                "bootstrap_port": [bootstrap_port] * n,
                "bootstrap_room": [room + i for i in range(n)]}
    return {**body, "bootstrap_host": prefill_host, "bootstrap_port": bootstrap_port,
            "bootstrap_room": room}
