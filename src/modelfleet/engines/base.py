"""What every engine adapter knows: its command line, readiness and abilities.

An adapter is pure: it turns a model's config into an argument list, an
environment and a health URL. Launching, watching and stopping belong to the
supervisor; translating errors on the wire belongs to the relay.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelfleet.errors import ConfigError
from modelfleet.settings import ModelConfig, Profile

# What a model can serve; the API refuses a route the model cannot answer.
CHAT = "chat"
COMPLETION = "completion"
EMBEDDING = "embedding"
RERANK = "rerank"
VISION = "vision"


@dataclass(frozen=True)
class ResponseRewriter:
    """An engine's answer quirks, fixed at the edge: a whole JSON body, one SSE line."""

    whole: Callable[[bytes], bytes]
    event: Callable[[bytes], bytes]


@dataclass
class LaunchSpec:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


class EngineAdapter:
    name: ClassVar[str] = ""
    launched: ClassVar[bool] = True  # False for engines we only point at (external)
    health_path: ClassVar[str] = "/health"
    # POST /start_profile and /stop_profile reach the engine's profiler (vLLM, SGLang).
    supports_profiling: ClassVar[bool] = False

    def launch(
        self, cfg: ModelConfig, host: str, port: int, profile: Profile | None, role: str = "pd"
    ) -> LaunchSpec:
        """The command line and environment of one instance.

        ``profile`` is the launch profile placement chose (its devices and extra
        args), ``role`` the instance's part in disaggregated serving: ``pd``
        (prefill and decode, the normal case), ``encode``, ``prefill`` or ``decode``.
        """
        raise NotImplementedError

    def capabilities(self, cfg: ModelConfig) -> set[str]:
        return {CHAT, COMPLETION}

    def ready_path(self, cfg: ModelConfig) -> str:
        """The path that answers 200 once the engine can serve (it may depend on the binary)."""
        return self.health_path

    def installed(self) -> bool:
        """Whether this host can launch the engine at all."""
        return True

    def response_rewriter(self) -> ResponseRewriter | None:
        """How to fix this engine's answers on the way out; None (the rule) passes bytes."""
        return None

    def base_url(self, cfg: ModelConfig, host: str, port: int) -> str:
        return f"http://{host}:{port}"

    def can_profile(self, cfg: ModelConfig) -> bool:
        """Whether ``/start_profile`` and ``/stop_profile`` are forwarded to its instances."""
        return self.supports_profiling

    def abort_path(self, cfg: ModelConfig) -> str | None:
        """Where the engine takes ``POST {"request_ids": [...]}`` to abort requests by
        their X-Request-Id; None where it has no such route (closing the connection
        is then the only way, and it is always done too)."""
        return None


def flag_args(args: dict[str, Any]) -> list[str]:
    """``{"max_model_len": 2048, "trust_remote_code": True}`` → CLI flags.

    True becomes a bare flag, False and None are left out, lists repeat the value.
    """
    out: list[str] = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list | tuple):
            out.append(flag)
            out.extend(str(v) for v in value)
        elif isinstance(value, dict):
            out.extend([flag, json.dumps(value, separators=(",", ":"))])
        else:
            out.extend([flag, str(value)])
    return out


# Flags modelfleet owns: a model's args may not move the port, rename the model or set
# a key the relay does not know (the model's ``api_key`` is the one place for it).
RESERVED = ("model", "host", "port", "served_model_name", "api_key")


def merged_args(
    cfg: ModelConfig, profile: Profile | None, engine: str, reserved: tuple[str, ...] = RESERVED
) -> dict[str, Any]:
    """Model args with the profile's over them; refuses the flags modelfleet owns."""
    args = {**cfg.args, **(profile.args if profile else {})}
    taken = [k for k in reserved if k in args]
    if taken:
        raise ConfigError(f"{engine}: args {taken} are set by modelfleet; remove them")
    return args


def cuda_devices(profile: Profile | None) -> list[str]:
    """``["cuda:0", "cuda:3"]`` → ``["0", "3"]``; other devices are not ours to place."""
    if profile is None:
        return []
    return [d.split(":", 1)[1] for d in profile.devices if d.startswith("cuda:")]


def lora_specs(value: Any) -> list[str]:
    """``{name: path}`` or ``["name=path"]`` → ``["name=path", ...]``."""
    if isinstance(value, dict):
        return [f"{name}={path}" for name, path in value.items()]
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, nested dicts merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def side_port(port: int, offset: int) -> int:
    """A second port of an instance, kept inside 1024..65535."""
    return 1024 + (port - 1024 + offset) % (65536 - 1024)
