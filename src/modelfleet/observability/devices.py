"""The devices models are placed on: GPUs (NVML when present) and the CPU (psutil).

An inventory reports each device's total memory and, when it can measure it,
the memory free right now. Declared devices (the config's ``devices``) are
trusted as given and have no measurement: placement then counts reservations.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import psutil

from modelfleet.settings import DeviceSpec

log = logging.getLogger("modelfleet.devices")
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Device:
    id: str  # "cpu" or "cuda:N"
    name: str
    total_mb: int
    free_mb: int | None = None  # measured now; None when declared
    extra: dict[str, Any] | None = None


class Inventory(Protocol):
    def devices(self) -> list[Device]: ...


class DeclaredInventory:
    def __init__(self, specs: list[DeviceSpec]):
        self._devices = [Device(s.id, s.name or s.id, s.memory_mb) for s in specs]

    def devices(self) -> list[Device]:
        return list(self._devices)


class DetectedInventory:
    """NVML GPUs (if the library and a driver are there) plus the CPU's RAM."""

    def __init__(self) -> None:
        self._nvml: Any = None
        with contextlib.suppress(Exception):  # no library, no driver: CPU only
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml

    def devices(self) -> list[Device]:
        out = self._gpus()
        vm = psutil.virtual_memory()
        out.append(Device("cpu", "cpu", vm.total // MB, vm.available // MB,
                          {"cpu_count": psutil.cpu_count()}))
        return out

    def _gpus(self) -> list[Device]:
        nvml = self._nvml
        if nvml is None:
            return []
        out = []
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                name = nvml.nvmlDeviceGetName(handle)
                out.append(Device(f"cuda:{i}", name if isinstance(name, str) else name.decode(),
                                  mem.total // MB, mem.free // MB))
        except Exception as exc:  # noqa: BLE001 - a flaky driver must not break placement
            log.warning("NVML query failed: %s", exc)
        return out


def inventory_for(specs: list[DeviceSpec] | None) -> Inventory:
    return DeclaredInventory(specs) if specs is not None else DetectedInventory()
