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
