"""What every route needs: the loaded model, the worker pool, and the names to report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from modelfleet.engines.builtin.config import EngineArgs, Task
from modelfleet.engines.builtin.embedder import CrossScorer, Embedder
from modelfleet.engines.builtin.generator import TextGenerator
from modelfleet.engines.builtin.runtime import Engine
from modelfleet.errors import NotFoundError


@dataclass
class ServingContext:
    """The engine process's state, built once before the port opens, read by routes.

    Exactly one of ``generator`` (task chat) and ``pooler`` (embed, rerank) is set.
    """

    args: EngineArgs
    task: Task
    engine: Engine
    generator: TextGenerator | None = None
    pooler: Embedder | CrossScorer | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def model_name(self) -> str:
        return self.args.name

    @property
    def tokenizer(self) -> Any:
        model = self.generator or self.pooler
        assert model is not None
        return model.tokenizer

    @property
    def max_model_len(self) -> int:
        model = self.generator or self.pooler
        assert model is not None
        return model.max_model_len

    def _unavailable(self, path: str) -> NotFoundError:
        return NotFoundError(
            f"{path} is not available: this engine serves model {self.model_name!r} "
            f"for the {self.task} task"
        )

    def need_generator(self, path: str) -> TextGenerator:
        """The causal LM, or the 404 of a route this task does not serve."""
        if self.generator is None:
            raise self._unavailable(path)
        return self.generator

    def need_pooler(self, path: str) -> Embedder | CrossScorer:
        """The pooling model, or the 404 of a route this task does not serve."""
        if self.pooler is None:
            raise self._unavailable(path)
        return self.pooler

    def need_embedder(self, path: str) -> Embedder:
        """The embedding model (``/v1/embeddings`` needs one, not a cross-encoder)."""
        if not isinstance(self.pooler, Embedder):
            raise self._unavailable(path)
        return self.pooler
