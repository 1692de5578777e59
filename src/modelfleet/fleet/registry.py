"""The fleet: every managed model, found by name or alias, and the idle reaper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp

from modelfleet.engines import adapter_for
from modelfleet.engines.base import CHAT
from modelfleet.errors import (
    ConflictError,
    FleetError,
    InvalidRequestError,
    ModelNotFoundError,
)
from modelfleet.fleet.health import health_loop
from modelfleet.fleet.model import ManagedModel, ModelState
from modelfleet.fleet.placement import Placement
from modelfleet.observability.devices import inventory_for
from modelfleet.settings import ModelConfig, Settings

if TYPE_CHECKING:
    from modelfleet.fleet.coordinator import Coordinator

log = logging.getLogger("modelfleet.fleet")


class Fleet:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        models: list[ModelConfig] | None = None,
        coordinator: Coordinator | None = None,
    ):
        self.settings = settings
        self.coordinator = coordinator
        self.session = session
        self.models: dict[str, ManagedModel] = {}
        self._names: dict[str, ManagedModel] = {}
        self._ids: dict[str, ManagedModel] = {}  # the store's ids (``model-…``)
        self._reaper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.started_at = time.time()
        self.placement = Placement(inventory_for(settings.devices, settings.nvml_module),
                                   lambda: self.models.values(),
                                   lambda: self.settings.max_concurrent_models)
        self._health: asyncio.Task[None] | None = None
        for cfg in settings.models if models is None else models:
            self.add(cfg)

    def add(self, cfg: ModelConfig) -> ManagedModel:
        """Manage a new model; 409 MODEL_ALREADY_EXISTS if its name or an alias is taken."""
        self._check_names(cfg)
        model = ManagedModel(
            cfg,
            adapter_for(cfg.engine),
            self.settings.data_dir / "logs",
            self.session,
            self.settings.timeouts.start,
            self.placement,
        )
        model.coordinator = self.coordinator
        model.bind_host = self.settings.fleet.advertise_host or "127.0.0.1"
        self.models[cfg.name] = model
        self._index(model)
        return model

    def update(self, cfg: ModelConfig) -> ManagedModel:
        """Give the model ``cfg.name`` a new config; it applies from the next start.

        Names and aliases are re-indexed at once; the engine may change only while
        the model is stopped (409 otherwise), since instances belong to an engine.
        """
        model = self.models.get(cfg.name)
        if model is None:
            raise ModelNotFoundError(f"The model `{cfg.name}` does not exist.", param="model")
        self._check_names(cfg, allow=model)
        if cfg.engine != model.cfg.engine:
            if model.state not in (ModelState.STOPPED, ModelState.FAILED):
                raise ConflictError(f"stop {cfg.name!r} before changing its engine",
                                    code="MODEL_RUNNING")
            model.adapter = adapter_for(cfg.engine)
            model.rewriter = model.adapter.response_rewriter()
        model.cfg = cfg
        model.start_timeout = cfg.startup_timeout or self.settings.timeouts.start
        model.capabilities = model.adapter.capabilities(cfg)
        self._names = {n: m for n, m in self._names.items() if m is not model}
        self._index(model)
        return model

    def id_of(self, name: str) -> str:
        """The store id of model ``name`` (its name when it has none)."""
        model = self.models.get(name)
        return next((i for i, m in self._ids.items() if m is model), name)

    def bind_id(self, name: str, model_id: str) -> None:
        """Let ``model_id`` (the store's id of model ``name``) find it too."""
        self._ids[model_id] = self.models[name]

    async def remove(self, name: str) -> None:
        """Stop the model (waiting for its engines) and forget it."""
        model = self.get(name)
        await model.stop()
        self.models.pop(model.name, None)
        self._names = {n: m for n, m in self._names.items() if m is not model}
        self._ids = {i: m for i, m in self._ids.items() if m is not model}
        model.close()

    def _index(self, model: ManagedModel) -> None:
        for name in [model.cfg.name, *model.cfg.aliases]:
            self._names[name] = model

    def _check_names(self, cfg: ModelConfig, allow: ManagedModel | None = None) -> None:
        for name in [cfg.name, *cfg.aliases]:
            holder = self._names.get(name)
            if holder is not None and holder is not allow:
                raise ConflictError(f"the name {name!r} is already used by model "
                                    f"{holder.name!r}", code="MODEL_ALREADY_EXISTS",
                                    param="name")

    def get(self, name: str) -> ManagedModel:
        """The model called ``name`` (its name, one of its aliases, or its store id)."""
        try:
            return self._names.get(name) or self._ids[name]
        except KeyError:
            raise ModelNotFoundError(
                f"The model `{name}` does not exist.", param="model"
            ) from None

    def resolve(self, name: object, capability: str = CHAT) -> ManagedModel:
        """The model a request names; with no name, the only model that can serve it."""
        if name is None:
            candidates = [m for m in self.models.values() if capability in m.capabilities]
            if len(candidates) == 1:
                return candidates[0]
            raise InvalidRequestError(
                "`model` is required: more than one model can serve this request"
                if candidates else "no model can serve this request",
                param="model",
            )
        if not isinstance(name, str):
            raise InvalidRequestError("`model` must be a string", param="model")
        model = self.get(name)
        if capability not in model.capabilities:
            raise InvalidRequestError(
                f"model `{model.name}` does not support {capability}", param="model"
            )
        return model

    async def start(self) -> None:
        for model in self.models.values():
            if model.cfg.auto_start:
                self._spawn(model.start())
        self._reaper = asyncio.create_task(self._reap_idle())
        self._health = asyncio.create_task(
            health_loop(self.models, lambda: self.settings.health_check_interval))

    def start_in_background(self, model: ManagedModel) -> None:
        """Start ``model`` without waiting (auto_start of a model added at run time)."""
        self._spawn(model.start())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background start failed: %s", task.exception())

    async def _reap_idle(self, interval: float = 0.5) -> None:
        """Stop models idle past their idle_timeout; never one with a request in flight."""
        while True:
            await asyncio.sleep(interval)
            for model in list(self.models.values()):
                timeout = model.cfg.idle_timeout
                if (
                    timeout > 0
                    and model.state is ModelState.READY
                    and model.in_flight == 0
                    and model.idle_seconds() >= timeout
                    and not (self.coordinator
                             and self.coordinator.used_elsewhere(model, timeout))
                ):
                    model.log.append(f"[modelfleet] idle for {timeout:g}s; unloading")
                    self._spawn(model.stop())

    def in_flight(self) -> int:
        """Requests being served by every model now."""
        return sum(m.in_flight for m in self.models.values())

    def set_start_timeout(self, seconds: float) -> None:
        """The start timeout of every model whose config does not set its own."""
        self.settings.timeouts.start = seconds
        for model in self.models.values():
            if model.cfg.startup_timeout is None:
                model.start_timeout = seconds

    async def stop_all(self) -> None:
        await asyncio.gather(*(m.stop() for m in self.models.values()), return_exceptions=True)

    async def close(self) -> None:
        for loop in (self._reaper, self._health):
            if loop:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        results = await asyncio.gather(
            *(m.stop(grace=5) for m in self.models.values()), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, FleetError):
                log.warning("stop failed: %r", r)
        for m in self.models.values():
            m.close()
