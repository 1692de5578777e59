"""Placement: which launch profile (set of devices) a new instance gets.

A model lists launch profiles, first preferred. An instance takes the first
profile whose every device has room for the model's need; the need is the
config's ``resource_requirements`` or, failing that, an estimate from the size
of its weight files. Room on a device is its total memory less what placed
instances reserved, and, where the device is measured (NVML, psutil), also
its measured free memory less what still-starting instances reserved (their
engines have not allocated yet). When nothing fits, ready models with no
request in flight that hold memory on those devices are stopped, least
recently used first, until a profile fits. A model whose need exceeds every
profile's devices even when empty fails at once with INSUFFICIENT_RESOURCES.

Apart from memory, at most ``max_concurrent_models`` models run at once: a model
starting past that stops the least recently used idle one, or fails with
INSUFFICIENT_RESOURCES when every running model is busy.

Decisions are serialised by one lock, so concurrent starts (several replicas,
several models) never both take the last room on a device.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelfleet.errors import InsufficientResourcesError
from modelfleet.observability.devices import Device, Inventory
from modelfleet.settings import ModelConfig, Profile

if TYPE_CHECKING:
    from modelfleet.fleet.model import ManagedModel

log = logging.getLogger("modelfleet.placement")

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
# Engines that run outside any device we manage.
DEVICELESS_ENGINES = frozenset({"external", "simulator"})
MB = 1024 * 1024


@dataclass
class Reservation:
    """What one instance holds: its profile and MB per device."""

    profile: Profile | None
    memory: dict[str, int] = field(default_factory=dict)
    placed: bool = False  # False while the instance is starting

    @property
    def source(self) -> str:
        return self.profile.name if self.profile else "default"


def weights_mb(path: str) -> int:
    """Size of the weight files at ``path`` (a file or a directory), in MB."""
    root = Path(path)
    try:
        if root.is_file():
            return root.stat().st_size // MB + 1
        total = sum(p.stat().st_size for p in root.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
    except OSError:
        return 0
    return total // MB + 1 if total else 0


def need_mb(cfg: ModelConfig, devices: list[str]) -> int:
    """MB the model needs on each device of a profile."""
    req = cfg.resource_requirements
    gpus = [d for d in devices if d.startswith("cuda:")]
    if gpus and req.gpu_memory is not None:
        return req.gpu_memory
    if not gpus and req.memory is not None:
        return req.memory
    if cfg.engine in DEVICELESS_ENGINES and req.gpu_memory is None and req.memory is None:
        return 0
    # Weights, plus a fifth for activations and cache, split over the profile's GPUs.
    return int(weights_mb(cfg.model) * 1.2 / max(1, len(gpus))) + (256 if not gpus else 512)


def profiles_of(cfg: ModelConfig) -> list[Profile | None]:
    if cfg.profiles:
        return list(cfg.profiles)
    if cfg.engine in DEVICELESS_ENGINES:
        return [None]
    return [Profile(name="cpu", devices=["cpu"])]


RUNNING_STATES = ("starting", "ready")


class Placement:
    def __init__(self, inventory: Inventory, models: Callable[[], Iterable[ManagedModel]],
                 max_models: Callable[[], int] = lambda: 1_000_000):
        self.inventory = inventory
        self._models = models
        self._max_models = max_models
        self._lock = asyncio.Lock()
        self._held: list[Reservation] = []

    async def place(self, model: ManagedModel) -> Reservation:
        """Reserve room for one instance of ``model``; may stop idle models for it."""
        async with self._lock:
            if not model.instances:  # a new model, not one more replica of a running one
                await self._within_model_cap(model)
            options = profiles_of(model.cfg)
            devices = {d.id: d for d in self.inventory.devices()}
            self._check_possible(model.cfg, options, devices)
            while True:
                chosen = self._first_fit(model.cfg, options, devices)
                if chosen is not None:
                    self._held.append(chosen)
                    return chosen
                victim = self._idle_victim(model, options)
                if victim is None:
                    raise InsufficientResourcesError(
                        f"no room for {model.name!r} on "
                        f"{', '.join(_names(options))}: every model there is busy",
                        details={"free_mb": self.free_mb(devices)})
                victim.log.append(f"[modelfleet] stopping to make room for {model.name}")
                log.info("stopping idle %s to make room for %s", victim.name, model.name)
                await victim.stop()
                devices = {d.id: d for d in self.inventory.devices()}

    async def _within_model_cap(self, model: ManagedModel) -> None:
        cap = self._max_models()
        while True:
            running = [m for m in self._models()
                       if m is not model and m.state.value in RUNNING_STATES]
            if len(running) < cap:
                return
            idle = [m for m in running if m.is_idle()]
            victim = min(idle, key=lambda m: m.last_used, default=None)
            if victim is None:
                raise InsufficientResourcesError(
                    f"no room for {model.name!r}: max_concurrent_models is {cap} and "
                    f"{', '.join(sorted(m.name for m in running))} are busy",
                    details={"max_concurrent_models": cap})
            victim.log.append(f"[modelfleet] stopping to make room for {model.name} "
                              f"(max_concurrent_models {cap})")
            log.info("stopping idle %s: max_concurrent_models %d", victim.name, cap)
            await victim.stop()

    def release(self, reservation: Reservation | None) -> None:
        if reservation is not None and reservation in self._held:
            self._held.remove(reservation)

    def free_mb(self, devices: dict[str, Device]) -> dict[str, int]:
        """Room left on each device, after reservations (see the module docstring)."""
        free = {}
        for dev_id, dev in devices.items():
            held = sum(r.memory.get(dev_id, 0) for r in self._held)
            room = dev.total_mb - held
            if dev.free_mb is not None:
                pending = sum(r.memory.get(dev_id, 0) for r in self._held if not r.placed)
                room = min(room, dev.free_mb - pending)
            free[dev_id] = room
        return free

    def _check_possible(self, cfg: ModelConfig, options: list[Profile | None],
                        devices: dict[str, Device]) -> None:
        for profile in options:
            ids = profile.devices if profile else []
            need = need_mb(cfg, ids)
            if all(d in devices and devices[d].total_mb >= need for d in ids):
                return
        raise InsufficientResourcesError(
            f"model {cfg.name!r} can never fit: it needs "
            + "; ".join(f"{need_mb(cfg, p.devices if p else [])} MB on each of "
                        f"{'+'.join(p.devices) if p and p.devices else 'no device'}"
                        for p in options)
            + " and the devices have "
            + ", ".join(f"{d.id} {d.total_mb} MB" for d in devices.values()),
            details={"devices": {d.id: d.total_mb for d in devices.values()}})

    def _first_fit(self, cfg: ModelConfig, options: list[Profile | None],
                   devices: dict[str, Device]) -> Reservation | None:
        free = self.free_mb(devices)
        for profile in options:
            ids = profile.devices if profile else []
            need = need_mb(cfg, ids)
            if all(free.get(d, -1) >= need for d in ids):
                return Reservation(profile, {d: need for d in ids})
        return None

    def _idle_victim(
        self, model: ManagedModel, options: list[Profile | None]
    ) -> ManagedModel | None:
        wanted = {d for p in options if p for d in p.devices}
        idle = [m for m in self._models()
                if m is not model and m.is_idle() and wanted & m.held_devices()]
        return min(idle, key=lambda m: m.last_used, default=None)


def _names(options: list[Profile | None]) -> list[str]:
    return ["+".join(p.devices) if p and p.devices else "no device" for p in options]
