"""Text Generation Inference, launched as ``text-generation-launcher``; ready on ``GET /health``.

Checked against huggingface/text-generation-inference 3.3.6-dev0 (main, January 2026):
docs/source/reference/launcher.md, router/src/server.rs (routes, API key layer, metrics
listener), router/src/validation.rs, router/src/lib.rs, docs/source/reference/metrics.md.
TGI is in maintenance mode upstream; it still speaks OpenAI at /v1/chat/completions
and /v1/completions, and natively at POST /generate and /generate_stream.

One instance on port 9001 with a two-GPU profile::

    CUDA_VISIBLE_DEVICES=0,1 text-generation-launcher --model-id /models/qwen \\
        --hostname 127.0.0.1 --port 9001 --prometheus-port 10001 \\
        --shard-uds-path /tmp/modelfleet-tgi-9001 --master-port 11001 --num-shard 2

Quirks handled here:

- TGI binds a second Prometheus listener (default 9000), a shard socket path
  (/tmp/text-generation-server) and a torch master port (29500): all fixed defaults a
  second instance would collide on, so each is derived from the instance's HTTP port.
  ``/metrics`` is also served on the HTTP port; scrape that one.
- No served-model-name flag: TGI ignores the ``model`` field of requests.
- ``--api-key`` guards the generation routes only (``/health``, ``/metrics``, ``/info``
  stay open); clap also reads every flag from its environment variable (``API_KEY``,
  ``PORT``, ``DTYPE``...), so the gateway's own environment can leak into TGI.
- ``--sharded`` takes a value (``true``/``false``), unlike the bare boolean flags.
- One task only: text generation. Embeddings are a different server (TEI).
- The sampling validation refuses OpenAI's "off" values (temperature 0, top_p 1):
  ``generate_parameters`` maps them; ``completion_to_generate`` and
  ``generate_to_completion`` translate a completions request and a /generate answer.

Knob read from ``args``: ``lora_modules`` ({name: path} or ["name=path"]) becomes
``--lora-adapters name=path,...``; requests pick an adapter with ``adapter_id``.
"""

from __future__ import annotations

import shutil
import time
import uuid
from typing import Any, ClassVar

from modelfleet.engines.base import (
    CHAT,
    COMPLETION,
    RESERVED,
    EngineAdapter,
    LaunchSpec,
    cuda_devices,
    flag_args,
    lora_specs,
    merged_args,
    side_port,
)
from modelfleet.errors import ConfigError, InvalidRequestError
from modelfleet.settings import ModelConfig, Profile

PROMETHEUS_PORT_OFFSET = 1000
MASTER_PORT_OFFSET = 2000
SHARD_UDS_ROOT = "/tmp/modelfleet-tgi"
# Flags whose booleans are values (clap Option<bool>), not bare switches.
_VALUE_BOOLS = ("sharded",)

# TGI's finish reasons → OpenAI's.
FINISH_REASONS = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}

# Prometheus names on GET /metrics (metrics-rs: no _total suffix on counters).
METRICS: dict[str, str] = {
    "requests_running": "tgi_batch_current_size",
    "requests_waiting": "tgi_queue_size",
    "requests": "tgi_request_count",
    "requests_succeeded": "tgi_request_success",
    "input_tokens_per_request": "tgi_request_input_length",
    "generated_tokens_per_request": "tgi_request_generated_tokens",
    "itl_seconds": "tgi_request_mean_time_per_token_duration",
    "e2e_seconds": "tgi_request_duration",
    "queue_seconds": "tgi_request_queue_duration",
}


class TGIAdapter(EngineAdapter):
    name = "tgi"
    metrics: ClassVar[dict[str, str]] = METRICS

    def executable(self) -> list[str]:
        return ["text-generation-launcher"]

    def installed(self) -> bool:
        return shutil.which("text-generation-launcher") is not None

    def launch(
        self, cfg: ModelConfig, host: str, port: int, profile: Profile | None, role: str = "pd"
    ) -> LaunchSpec:
        if role != "pd":
            raise ConfigError(f"tgi: no disaggregated serving (role {role!r})")
        if cfg.task in ("embed", "rerank"):
            raise ConfigError(f"tgi serves text generation only, not task {cfg.task!r}")
        user = merged_args(cfg, profile, "tgi", (*RESERVED, "model_id", "hostname"))
        lora = user.pop("lora_modules", None)
        defaults: dict[str, Any] = {
            "prometheus_port": side_port(port, PROMETHEUS_PORT_OFFSET),
            "shard_uds_path": f"{SHARD_UDS_ROOT}-{port}",
            "master_port": side_port(port, MASTER_PORT_OFFSET),
        }
        env: dict[str, str] = {}
        gpus = cuda_devices(profile)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
            if len(gpus) > 1:
                defaults["num_shard"] = len(gpus)
        if lora:
            defaults["lora_adapters"] = ",".join(lora_specs(lora))
        args = {**defaults, **user}
        for key in _VALUE_BOOLS:
            if isinstance(args.get(key), bool):
                args[key] = str(args[key]).lower()
        argv = [*self.executable(), "--model-id", cfg.model, "--hostname", host,
                "--port", str(port)]
        if cfg.api_key:
            argv += ["--api-key", cfg.api_key]
        return LaunchSpec(argv=argv + flag_args(args), env=env)

    def capabilities(self, cfg: ModelConfig) -> set[str]:
        return {CHAT, COMPLETION}


def generate_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` of a /generate body in the ranges TGI's validation accepts.

    TGI answers 422 to temperature <= 0 (greedy is ``do_sample: false``), to top_p or
    typical_p outside (0, 1) and to top_k <= 0 — the values clients send to mean "off".
    Unset (None) values are dropped; a single stop string becomes a list.
    """
    out = {k: v for k, v in params.items() if v is not None}
    if "temperature" in out and out["temperature"] <= 0:
        del out["temperature"]
        out["do_sample"] = False
    for key in ("top_p", "typical_p"):
        if key in out and not 0 < out[key] < 1:
            del out[key]
    if "top_k" in out and out["top_k"] <= 0:
        del out["top_k"]
    if isinstance(out.get("stop"), str):
        out["stop"] = [out["stop"]]
    return out


def completion_to_generate(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI completions request as a TGI ``/generate`` body (the same body goes to
    ``/generate_stream`` for a stream).

    One text prompt and one choice only: /generate has neither batches nor ``n``.
    ``presence_penalty``, ``logit_bias`` and ``user`` have no TGI counterpart and are
    dropped; ``top_k`` and ``repetition_penalty`` (not in OpenAI) pass through.
    """
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise InvalidRequestError("this engine takes one text prompt per request",
                                  param="prompt")
    if (body.get("n") or 1) > 1:
        raise InvalidRequestError("this engine returns one choice per request; n must be 1",
                                  param="n")
    temperature = body.get("temperature")
    params = {
        "max_new_tokens": body.get("max_tokens"),
        # OpenAI samples unless temperature is 0; TGI is greedy unless told to sample.
        "do_sample": temperature != 0,
        "temperature": temperature,
        "top_p": body.get("top_p"),
        "top_k": body.get("top_k"),
        "repetition_penalty": body.get("repetition_penalty"),
        "frequency_penalty": body.get("frequency_penalty"),
        "stop": body.get("stop"),
        "seed": body.get("seed"),
        "return_full_text": body.get("echo"),
        "details": True,  # finish_reason and generated_tokens live in details
    }
    return {"inputs": prompt, "parameters": generate_parameters(params)}


def generate_to_completion(
    response: dict[str, Any],
    *,
    model: str,
    prompt_tokens: int | None = None,
    completion_id: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """A TGI ``/generate`` answer as an OpenAI completion with usage.

    The body carries no prompt token count: TGI sends it in the ``x-prompt-tokens``
    response header; pass it as ``prompt_tokens``. Without it the count of
    ``details.prefill`` is used (filled only for ``decoder_input_details``), else 0.
    """
    details = response.get("details") or {}
    completion_tokens = int(details.get("generated_tokens") or 0)
    if prompt_tokens is None:
        prompt_tokens = len(details.get("prefill") or [])
    reason = details.get("finish_reason")
    return {
        "id": completion_id or f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{
            "index": 0,
            "text": response.get("generated_text", ""),
            "finish_reason": FINISH_REASONS.get(reason, reason) if reason else None,
            "logprobs": None,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
