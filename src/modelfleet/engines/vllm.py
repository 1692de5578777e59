"""vLLM, launched as ``vllm serve MODEL``; ready when ``GET /health`` answers 200.

Checked against the vLLM CLI reference (https://docs.vllm.ai/en/latest/cli/serve/, v0.32)
and vllm-project/vllm main: docs/features/nixl_connector_usage.md,
docs/features/disagg_encoder.md, examples/disaggregated/disaggregated_encoder/
disagg_1e1p1d_example.sh, vllm/distributed/ec_transfer/ec_connector/factory.py,
tests/v1/kv_connector/nixl_integration/toy_proxy_server.py, vllm/v1/metrics/loggers.py.

One instance on port 9001 with a two-GPU profile::

    CUDA_VISIBLE_DEVICES=0,1 vllm serve /models/qwen --host 127.0.0.1 --port 9001 \\
        --served-model-name qwen --tensor-parallel-size 2

Roles of disaggregated serving (``role`` of ``launch``)::

    pd       no transfer config; an args.kv_transfer_config passes through (e.g. LMCache)
    prefill  --kv-transfer-config '{"kv_connector":"NixlConnector","kv_role":"kv_producer"}'
    decode   --kv-transfer-config '{"kv_connector":"NixlConnector","kv_role":"kv_consumer"}'
    encode   --no-enable-prefix-caching --ec-transfer-config '{"ec_connector":
             "ECExampleConnector","ec_connector_extra_config":
             {"shared_storage_path":"/tmp/modelfleet-ec/NAME"},"ec_role":"ec_producer"}'

A user's ``kv_role: kv_both`` is kept (valid on either side, as vLLM's NIXL examples
run it); a role contradicting the instance's is refused. Encoder disaggregation is on
when the model's ``roles`` include encode (or args name an EC connector or config):
``prefill`` and ``pd`` then get the same EC config with ``"ec_role":"ec_consumer"``.
Every instance of a disaggregated role runs with ``--enable-request-id-headers``, as
upstream's examples do, so the router's X-Request-Id names the request on each side.
``abort_path`` is vLLM's ``/abort_requests``, served only with ``--tokens-only``.
NixlConnector instances get ``VLLM_NIXL_SIDE_CHANNEL_PORT`` (unique per host, derived
from the HTTP port) and, when bound to a routable address, ``VLLM_NIXL_SIDE_CHANNEL_HOST``.
``encode_request``, ``prefill_request`` and ``decode_request`` shape the requests a
router sends for one E-P-D request (``gateway/disagg.py``).

Knobs read from ``args`` (model args, profile args over them) and never passed as is:

    kv_connector        connector of prefill/decode instances (default NixlConnector)
    ec_connector        turns encoder disaggregation on (ECExampleConnector, ...)
    kv_transfer_config  dicts merged over the role's defaults; the user's keys win,
    ec_transfer_config  except kv_role/ec_role, which the instance's role decides
    lora_modules        {name: path} or ["name=path", ...]; adds --enable-lora
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from typing import Any, ClassVar

from modelfleet.engines.base import (
    CHAT,
    COMPLETION,
    EMBEDDING,
    RERANK,
    VISION,
    EngineAdapter,
    LaunchSpec,
    cuda_devices,
    flag_args,
    lora_specs,
    merge,
    merged_args,
    side_port,
)
from modelfleet.engines.tasks import detect_task
from modelfleet.errors import ConfigError
from modelfleet.settings import ModelConfig, Profile

ROLES = ("pd", "prefill", "decode", "encode")
DEFAULT_KV_CONNECTOR = "NixlConnector"
DEFAULT_EC_CONNECTOR = "ECExampleConnector"
EC_STORAGE_ROOT = "/tmp/modelfleet-ec"
_KNOBS = ("kv_connector", "ec_connector", "kv_transfer_config", "ec_transfer_config",
          "lora_modules")
# Extra ports are derived from the HTTP port, which is unique on the host; the engines'
# own defaults (Nixl 5600, ...) are fixed numbers that two instances would share.
NIXL_PORT_OFFSET = 1000
P2P_NCCL_PORT_OFFSET = 2000
_UNROUTABLE = {"", "127.0.0.1", "localhost", "::1", "0.0.0.0", "::"}

# Prometheus names on GET /metrics (counters carry the exposition suffix _total).
# vllm:time_per_output_token_seconds was renamed inter_token_latency_seconds in 0.11.
METRICS: dict[str, str] = {
    "requests_running": "vllm:num_requests_running",
    "requests_waiting": "vllm:num_requests_waiting",
    "kv_cache_usage": "vllm:kv_cache_usage_perc",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    "preemptions": "vllm:num_preemptions_total",
    "ttft_seconds": "vllm:time_to_first_token_seconds",
    "itl_seconds": "vllm:inter_token_latency_seconds",
    "tpot_seconds": "vllm:request_time_per_output_token_seconds",
    "e2e_seconds": "vllm:e2e_request_latency_seconds",
    "queue_seconds": "vllm:request_queue_time_seconds",
}


class VLLMAdapter(EngineAdapter):
    name = "vllm"
    metrics: ClassVar[dict[str, str]] = METRICS
    supports_profiling = True

    def executable(self) -> list[str]:
        """The console script; the same CLI through this interpreter when vLLM is
        importable here but its script is not on PATH (a venv not activated)."""
        if shutil.which("vllm") is None and importlib.util.find_spec("vllm") is not None:
            return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
        return ["vllm", "serve"]

    def installed(self) -> bool:
        return shutil.which("vllm") is not None or importlib.util.find_spec("vllm") is not None

    def task(self, cfg: ModelConfig) -> str:
        return detect_task(cfg.model) if cfg.task == "auto" else cfg.task

    def launch(
        self, cfg: ModelConfig, host: str, port: int, profile: Profile | None, role: str = "pd"
    ) -> LaunchSpec:
        if role not in ROLES:
            raise ConfigError(f"vllm: unknown role {role!r} (expected one of {ROLES})")
        args = merged_args(cfg, profile, "vllm")
        knobs = {k: args.pop(k) for k in _KNOBS if k in args}
        env: dict[str, str] = {}
        gpus = cuda_devices(profile)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
            parallel = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")
            if len(gpus) > 1 and not any(k in args for k in parallel):
                args["tensor_parallel_size"] = len(gpus)
        if self.task(cfg) in ("embed", "rerank"):
            # --task embed is gone; the pooling runner serves embeddings and scores.
            args.setdefault("runner", "pooling")
        if knobs.get("lora_modules"):
            args.setdefault("enable_lora", True)
            args["lora_modules"] = lora_specs(knobs["lora_modules"])
        if role == "encode" and "enable_prefix_caching" not in args:
            # Every upstream encoder-instance example runs without prefix caching.
            args.setdefault("no_enable_prefix_caching", True)
        if role != "pd":
            args.setdefault("enable_request_id_headers", True)
        kv = _kv_transfer(role, knobs, host, port, env)
        if kv is not None:
            args["kv_transfer_config"] = kv
        ec = _ec_transfer(cfg.name, role, knobs, bool((cfg.roles or {}).get("encode")))
        if ec is not None:
            args["ec_transfer_config"] = ec
        argv = [*self.executable(), cfg.model, "--host", host, "--port", str(port),
                "--served-model-name", cfg.name]
        if cfg.api_key:
            argv += ["--api-key", cfg.api_key]
        return LaunchSpec(argv=argv + flag_args(args), env=env)

    def abort_path(self, cfg: ModelConfig) -> str | None:
        return "/abort_requests" if cfg.args.get("tokens_only") else None

    def capabilities(self, cfg: ModelConfig) -> set[str]:
        task = self.task(cfg)
        if task == "embed":
            return {EMBEDDING, RERANK}  # vLLM scores bi-encoders by cosine similarity
        if task == "rerank":
            return {RERANK}
        if "ec_connector" in cfg.args or "ec_transfer_config" in cfg.args:
            return {CHAT, COMPLETION, VISION}
        return {CHAT, COMPLETION}


def _kv_transfer(
    role: str, knobs: dict[str, Any], host: str, port: int, env: dict[str, str]
) -> dict[str, Any] | None:
    user = knobs.get("kv_transfer_config")
    if role in ("prefill", "decode"):
        defaults = {"kv_connector": knobs.get("kv_connector", DEFAULT_KV_CONNECTOR)}
        config = merge(defaults, user or {})
        wanted = "kv_producer" if role == "prefill" else "kv_consumer"
        given = config.get("kv_role")
        if given not in (None, wanted, "kv_both"):
            raise ConfigError(f"vllm: a {role} instance cannot have kv_role {given!r} "
                              f"(use {wanted} or kv_both)")
        config["kv_role"] = given or wanted
    elif role == "pd" and user is not None:
        config = dict(user)
    else:
        return None  # an encoder holds no KV cache
    connector = config.get("kv_connector")
    if connector == "NixlConnector":
        # One handshake port per worker on a host: base + dp_rank.
        env["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(side_port(port, NIXL_PORT_OFFSET))
        if host not in _UNROUTABLE:
            env["VLLM_NIXL_SIDE_CHANNEL_HOST"] = host
    elif connector == "P2pNcclConnector":
        # Its proxy_ip/proxy_port must come from the user; the per-instance ports not.
        config = merge({"kv_port": side_port(port, P2P_NCCL_PORT_OFFSET),
                        "kv_connector_extra_config": {"http_port": port}}, config)
    return config


def _ec_transfer(name: str, role: str, knobs: dict[str, Any],
                 has_encoders: bool = False) -> dict[str, Any] | None:
    user = knobs.get("ec_transfer_config") or {}
    enabled = role == "encode" or has_encoders or "ec_connector" in knobs or bool(user)
    if not enabled or role == "decode":
        return None  # decode reads the KV cache, never encoder output
    connector = knobs.get("ec_connector") or user.get("ec_connector") or DEFAULT_EC_CONNECTOR
    defaults: dict[str, Any] = {"ec_connector": connector}
    if connector == DEFAULT_EC_CONNECTOR:
        # A directory both sides see: same host (or a shared file system).
        defaults["ec_connector_extra_config"] = {
            "shared_storage_path": f"{EC_STORAGE_ROOT}/{name}"}
    config = merge(defaults, user)
    config["ec_role"] = "ec_producer" if role == "encode" else "ec_consumer"
    return config


def encode_request(body: dict[str, Any]) -> dict[str, Any]:
    """The body for an encoder instance: the client's, answered in one step and not
    streamed (vLLM's EPD proxy); the encoder runs the media and keeps its output for
    the instance that prefills."""
    out = {k: v for k, v in body.items()
           if k not in ("stream_options", "min_tokens", "min_completion_tokens")}
    out.update(stream=False, max_tokens=1)
    if "max_completion_tokens" in body:
        out["max_completion_tokens"] = 1
    return out


def prefill_request(body: dict[str, Any]) -> dict[str, Any]:
    """The body for the prefill instance of a P/D pair: one token, no stream, and
    ``kv_transfer_params`` asking it to keep the KV blocks for a remote decode."""
    out = {k: v for k, v in body.items()
           if k not in ("stream_options", "min_tokens", "min_completion_tokens")}
    out.update(stream=False, max_tokens=1, kv_transfer_params={
        "do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
        "remote_block_ids": None, "remote_host": None, "remote_port": None})
    if "max_completion_tokens" in body:
        out["max_completion_tokens"] = 1
    return out


def decode_request(body: dict[str, Any], prefill_response: dict[str, Any]) -> dict[str, Any]:
    """The client's body for the decode instance, carrying the prefill's transfer handle."""
    params = prefill_response.get("kv_transfer_params")
    return {**body, "kv_transfer_params": params} if params else dict(body)
