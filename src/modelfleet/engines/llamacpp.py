"""llama.cpp for GGUF files: ``llama-server`` when it is on PATH, else llama-cpp-python.

Checked against ggml-org/llama.cpp tools/server/README.md and llama-cpp-python 0.3.36
(llama_cpp/server/settings.py, cli.py, __main__.py, app.py).

llama.cpp's own server, ready when ``GET /health`` answers 200 (503 while loading)::

    llama-server -m /models/q.gguf --host 127.0.0.1 --port 9001 --alias qwen --jinja \\
        [--ctx-size N] [--n-gpu-layers 999] [--embeddings --pooling mean] [--api-key K]

llama-cpp-python's server (flags are its settings' field names, booleans take a value),
ready when ``GET /v1/models`` answers (it has no /health; the model loads before it listens)::

    python -m llama_cpp.server --model /models/q.gguf --host 127.0.0.1 --port 9001 \\
        --model_alias qwen --interrupt_requests false [--n_ctx N] [--n_gpu_layers -1] \\
        [--embedding true --kv_overrides llama.pooling_type=int:1]

Profiles: ``cuda:N`` devices set ``CUDA_VISIBLE_DEVICES`` and offload every layer unless
``n_gpu_layers`` is set; a ``cpu`` device keeps every layer on the CPU (``n_gpu_layers`` 0).
Embeddings are on for ``task: embed`` or ``args: {embedding: true}``, with mean pooling
(a chat model's GGUF names no pooling, and pooling "none" gives per-token vectors).
``n_ctx``/``ctx_size``, ``n_threads``/``threads`` and ``n_batch``/``batch_size`` are
spelled either way; any other arg is passed through in the chosen server's spelling.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import orjson

from modelfleet.engines.base import (
    CHAT,
    COMPLETION,
    EMBEDDING,
    EngineAdapter,
    LaunchSpec,
    ResponseRewriter,
    cuda_devices,
    merged_args,
)
from modelfleet.engines.base import flag_args as dash_flags
from modelfleet.errors import ConfigError
from modelfleet.settings import ModelConfig, Profile

LLAMA_SERVER = "llama-server"
GGUF_MAGIC = b"GGUF"
RESERVED = ("model", "host", "port", "alias", "model_alias", "api_key")
# Knobs with a different name in each server: (llama-server flag, llama_cpp.server field).
ALIASES = {
    "n_ctx": ("ctx_size", "n_ctx"), "ctx_size": ("ctx_size", "n_ctx"),
    "n_threads": ("threads", "n_threads"), "threads": ("threads", "n_threads"),
    "n_batch": ("batch_size", "n_batch"), "batch_size": ("batch_size", "n_batch"),
}
# "Every layer": llama-server reads -1 as "auto" (new builds) or as none (old ones),
# and 'all' is unknown to old builds; 999 means every layer to all of them.
ALL_LAYERS = {"llama-server": 999, "python": -1}
POOLING_MEAN = 1  # llama_pooling_type LLAMA_POOLING_TYPE_MEAN


def is_gguf(path: str | Path) -> bool:
    """Whether ``path`` names a GGUF model file, so that llama.cpp should serve it.

    True for an existing file that starts with the GGUF magic, and for a path that does
    not exist yet but ends in ``.gguf`` (the engine then reports the missing file).
    Directories, and existing files of any other format, are not GGUF.
    """
    p = Path(path).expanduser()
    if p.is_file():
        try:
            with p.open("rb") as f:
                return f.read(4) == GGUF_MAGIC
        except OSError:
            return False
    return not p.exists() and p.suffix.lower() == ".gguf"


class LlamaCppAdapter(EngineAdapter):
    name = "llamacpp"
    # llama_cpp.server's readiness route. llama-server answers it too, but already while
    # loading: code that can should ask ready_path(), which says /health for it.
    health_path = "/v1/models"

    def server(self) -> str:
        """``"llama-server"`` when that binary is on PATH, else ``"python"``."""
        return "llama-server" if shutil.which(LLAMA_SERVER) else "python"

    def ready_path(self, cfg: ModelConfig) -> str:
        """The route that answers 200 once the model is loaded, for the server launched.

        llama-server listens while loading and answers /v1/models then too, so only
        /health tells; llama_cpp.server has no /health but loads before it listens.
        """
        return "/health" if self.server() == "llama-server" else "/v1/models"

    def response_rewriter(self) -> ResponseRewriter:
        """Seed 003's ``usage.cache_n``/``prompt_n`` from llama-server's ``timings``."""
        return ResponseRewriter(whole=_whole_with_cache, event=event_with_cache)

    def installed(self) -> bool:
        if shutil.which(LLAMA_SERVER):
            return True
        # Not importing llama_cpp: that loads the native library. The [server] extra's
        # own packages must be there too, or ``python -m llama_cpp.server`` dies at import.
        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or spec.origin is None:
            return False
        server = Path(spec.origin).parent / "server" / "__main__.py"
        extras = ("sse_starlette", "starlette_context", "uvicorn", "fastapi")
        return server.is_file() and all(importlib.util.find_spec(m) for m in extras)

    def task(self, cfg: ModelConfig) -> str:
        """``embed``, ``rerank`` (refused by launch) or ``chat`` (also for ``auto``)."""
        return cfg.task if cfg.task in ("embed", "rerank") else "chat"

    def embeddings(self, cfg: ModelConfig) -> bool:
        return self.task(cfg) == "embed" or any(
            _truthy(cfg.args.get(k)) for k in ("embedding", "embeddings"))

    def launch(
        self, cfg: ModelConfig, host: str, port: int, profile: Profile | None, role: str = "pd"
    ) -> LaunchSpec:
        if role != "pd":
            raise ConfigError(f"llamacpp: role {role!r} is not supported (only 'pd')")
        if self.task(cfg) == "rerank":
            raise ConfigError("llamacpp: task 'rerank' is not supported")
        server = self.server()
        args = merged_args(cfg, profile, "llamacpp", RESERVED)
        args.pop("embedding", None)
        args.pop("embeddings", None)
        env: dict[str, str] = {}
        gpus = cuda_devices(profile)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
            args.setdefault("n_gpu_layers", ALL_LAYERS[server])
        elif profile is not None and "cpu" in profile.devices:
            args.setdefault("n_gpu_layers", 0)
        side = 0 if server == "llama-server" else 1
        args = {ALIASES[k][side] if k in ALIASES else k: v for k, v in args.items()}
        if server == "llama-server":
            argv = [LLAMA_SERVER, "-m", cfg.model, "--host", host, "--port", str(port),
                    "--alias", cfg.name]
            if self.embeddings(cfg):
                argv.append("--embeddings")
                args.setdefault("pooling", "mean")
            else:
                # Older builds apply only their built-in templates without --jinja.
                args.setdefault("jinja", True)
            if cfg.api_key:
                argv += ["--api-key", cfg.api_key]  # /health stays public
            return LaunchSpec(argv=argv + dash_flags(args), env=env)
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", cfg.model,
                "--host", host, "--port", str(port), "--model_alias", cfg.name]
        # Its default cancels a running request when another arrives; the gateway sends
        # concurrent requests, which must queue instead.
        args.setdefault("interrupt_requests", False)
        if self.embeddings(cfg):
            args["embedding"] = True
            args.setdefault("kv_overrides", [f"llama.pooling_type=int:{POOLING_MEAN}"])
        # No --api_key: its only readiness route (/v1/models) would then need the key,
        # which the supervisor's probe does not send. It listens on our host only.
        # uvicorn.run() prefers $HOST/$PORT over the flags: pin them to the same values.
        env.update(HOST=host, PORT=str(port))
        return LaunchSpec(argv=argv + underscore_flags(args), env=env)

    def capabilities(self, cfg: ModelConfig) -> set[str]:
        if self.task(cfg) == "rerank":
            return set()  # launch refuses it with the reason
        if self.task(cfg) == "embed":
            return {EMBEDDING}
        if not self.embeddings(cfg):
            return {CHAT, COMPLETION}
        if self.server() == "llama-server":
            return {EMBEDDING}  # llama-server --embeddings refuses completions
        return {CHAT, COMPLETION, EMBEDDING}  # llama_cpp.server serves both


def underscore_flags(args: dict[str, Any]) -> list[str]:
    """llama_cpp.server's spelling: ``--field value``, booleans as ``true``/``false``,
    lists as several values after one flag, dicts as JSON; None is left out."""
    out: list[str] = []
    for key, value in args.items():
        flag = "--" + key.replace("-", "_")
        if value is None:
            continue
        if isinstance(value, bool):
            out += [flag, "true" if value else "false"]
        elif isinstance(value, list | tuple):
            out += [flag, *(str(v) for v in value)]
        elif isinstance(value, dict):
            out += [flag, json.dumps(value, separators=(",", ":"))]
        else:
            out += [flag, str(value)]
    return out


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes", "on")


def usage_with_cache(answer: dict[str, Any]) -> dict[str, Any]:
    """A llama-server answer with its prompt-cache figures copied into ``usage``.

    llama-server reports them in a top-level ``timings`` object: ``cache_n`` prompt tokens
    reused from the KV cache and ``prompt_n`` tokens actually processed. The result has
    ``usage.cache_n``, ``usage.prompt_n`` and ``usage.prompt_tokens_details.cached_tokens``
    (= cache_n); a missing ``usage`` is built from the timings. An answer without integer
    timings (llama_cpp.server, embeddings) comes back unchanged. The input is not modified.
    """
    timings = answer.get("timings")
    if not isinstance(timings, dict):
        return answer
    cache_n, prompt_n = timings.get("cache_n"), timings.get("prompt_n")
    if not isinstance(cache_n, int) or not isinstance(prompt_n, int):
        return answer
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        predicted = timings.get("predicted_n")
        completion = predicted if isinstance(predicted, int) else 0
        usage = {"prompt_tokens": cache_n + prompt_n, "completion_tokens": completion,
                 "total_tokens": cache_n + prompt_n + completion}
    details = usage.get("prompt_tokens_details")
    details = {**(details if isinstance(details, dict) else {}), "cached_tokens": cache_n}
    usage = {**usage, "cache_n": cache_n, "prompt_n": prompt_n,
             "prompt_tokens_details": details}
    return {**answer, "usage": usage}


def chunk_with_cache(chunk: dict[str, Any]) -> dict[str, Any]:
    """``usage_with_cache`` for one streamed chunk, but only the chunk that carries usage.

    llama-server puts ``timings`` on the last chunk (which holds ``usage`` when the client
    asked for ``stream_options.include_usage``); a chunk without usage gets none, since
    clients take any chunk with usage for the final one.
    """
    if not isinstance(chunk.get("usage"), dict):
        return chunk
    return usage_with_cache(chunk)


def _whole_with_cache(data: bytes) -> bytes:
    if b'"timings"' not in data:
        return data
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    return orjson.dumps(usage_with_cache(answer)) if isinstance(answer, dict) else data


def event_with_cache(line: bytes) -> bytes:
    """One SSE line (``data: {...}``) through ``chunk_with_cache``; others unchanged."""
    if not line.startswith(b"data: {") or b'"timings"' not in line or b'"usage"' not in line:
        return line
    try:
        chunk = orjson.loads(line[6:])
    except orjson.JSONDecodeError:
        return line
    if not isinstance(chunk, dict):
        return line
    return b"data: " + orjson.dumps(chunk_with_cache(chunk))
