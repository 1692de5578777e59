"""Engine adapters, one per engine, looked up by the config's ``engine`` name."""

from __future__ import annotations

from modelfleet.engines.base import EngineAdapter
from modelfleet.engines.builtin_adapter import BuiltinAdapter
from modelfleet.engines.external import ExternalAdapter
from modelfleet.engines.llamacpp import LlamaCppAdapter
from modelfleet.engines.sglang import SGLangAdapter
from modelfleet.engines.simulator_adapter import SimulatorAdapter
from modelfleet.engines.tgi import TGIAdapter
from modelfleet.engines.vllm import VLLMAdapter
from modelfleet.errors import ConfigError

_ADAPTERS: dict[str, type[EngineAdapter]] = {
    "builtin": BuiltinAdapter,
    "simulator": SimulatorAdapter,
    "external": ExternalAdapter,
    "vllm": VLLMAdapter,
    "sglang": SGLangAdapter,
    "tgi": TGIAdapter,
    "llamacpp": LlamaCppAdapter,
}


def adapter_for(engine: str) -> EngineAdapter:
    try:
        return _ADAPTERS[engine]()
    except KeyError:
        raise ConfigError(f"engine {engine!r} is not available in this build") from None
