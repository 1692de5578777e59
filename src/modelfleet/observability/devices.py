"""The devices models are placed on: GPUs (NVML when present) and the CPU (psutil).

An inventory reports each device's total memory and, when it can measure it,
the memory free right now. Declared devices (the config's ``devices``) are
trusted as given and have no measurement: placement then counts reservations.

``GpuReader`` reads every GPU through NVML: the ``pynvml`` module by default,
imported and initialised on first use, or any object with the same functions
(tests hand in a fake). No library or no driver means no GPUs, never an error,
and each NVML call is guarded on its own: a query the driver refuses leaves
that one field None and the rest of the reading intact.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import psutil

from modelfleet.settings import DeviceSpec

log = logging.getLogger("modelfleet.devices")
MB = 1024 * 1024
DEFAULT_NVML_MODULE = "pynvml"


@dataclass(frozen=True, slots=True)
class Device:
    id: str  # "cpu" or "cuda:N"
    name: str
    total_mb: int
    free_mb: int | None = None  # measured now; None when declared
    extra: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding memory on a GPU; ``name`` from psutil, None when unreadable."""

    pid: int
    name: str | None
    memory_usage: int | None  # MB


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU at one moment (seed 002's field names). Memory in MB, power in W,
    temperature in °C, utilization in percent; None where NVML did not answer."""

    id: int
    name: str | None
    uuid: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    utilization: float | None = None
    memory_used: int | None = None
    memory_total: int | None = None
    memory_free: int | None = None
    temperature: float | None = None
    power_usage: float | None = None
    power_limit: float | None = None
    processes: list[GpuProcess] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _call(nvml: Any, name: str, *args: Any) -> Any:
    """``nvml.<name>(*args)``, or None when it raises (an NVML error, a function this
    build lacks)."""
    try:
        return getattr(nvml, name)(*args)
    except Exception as exc:  # a flaky driver must cost one field, not the reading
        log.debug("NVML %s failed: %s", name, exc)
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _cuda_version(value: Any) -> str | None:
    """NVML's integer CUDA version (12020) as seed 002 writes it ("12.2")."""
    if not isinstance(value, int) or value <= 0:
        return None
    return f"{value // 1000}.{value % 1000 // 10}"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _watts(milliwatts: Any) -> float | None:
    return round(milliwatts / 1000, 1) if isinstance(milliwatts, int | float) else None


def _mb(nbytes: Any) -> int | None:
    return int(nbytes) // MB if isinstance(nbytes, int | float) else None


def process_name(pid: int) -> str | None:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return None


class GpuReader:
    """Reads every GPU through NVML; thread-safe, so readings may run in a worker thread.

    ``nvml`` is the module to use; None imports ``module`` on the first reading.
    NVML is initialised once and shut down by ``close()``; after that, or when
    the import or ``nvmlInit`` fails, ``read()`` returns no GPUs.
    """

    def __init__(self, nvml: Any = None, module: str | None = None):
        self._nvml = nvml
        self._module = module or DEFAULT_NVML_MODULE
        self._lock = threading.Lock()
        self._opened = False
        self._closed = False

    def _open(self) -> Any:
        if self._opened or self._closed:
            return None if self._closed else self._nvml
        self._opened = True
        try:
            if self._nvml is None:
                self._nvml = importlib.import_module(self._module)
            self._nvml.nvmlInit()
        except Exception as exc:  # no library, no driver: CPU only
            log.info("no GPUs: NVML unavailable (%s: %s)", type(exc).__name__, exc)
            self._nvml = None
        return self._nvml

    @property
    def available(self) -> bool:
        """True when NVML is initialised (whether or not it sees any GPU)."""
        with self._lock:
            return self._open() is not None

    def read(self) -> list[GpuReading]:
        with self._lock:
            nvml = self._open()
            if nvml is None:
                return []
            count = _call(nvml, "nvmlDeviceGetCount") or 0
            driver = _text(_call(nvml, "nvmlSystemGetDriverVersion"))
            cuda = _call(nvml, "nvmlSystemGetCudaDriverVersion_v2")
            if cuda is None:
                cuda = _call(nvml, "nvmlSystemGetCudaDriverVersion")
            return [self._one(nvml, i, driver, _cuda_version(cuda)) for i in range(count)]

    @staticmethod
    def _one(nvml: Any, index: int, driver: str | None, cuda: str | None) -> GpuReading:
        handle = _call(nvml, "nvmlDeviceGetHandleByIndex", index)
        if handle is None:
            return GpuReading(id=index, name=None, driver_version=driver, cuda_version=cuda)
        util = _call(nvml, "nvmlDeviceGetUtilizationRates", handle)
        mem = _call(nvml, "nvmlDeviceGetMemoryInfo", handle)
        temp = _call(nvml, "nvmlDeviceGetTemperature", handle,
                        getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
        procs = _call(nvml, "nvmlDeviceGetComputeRunningProcesses", handle) or []
        return GpuReading(
            id=index,
            name=_text(_call(nvml, "nvmlDeviceGetName", handle)),
            uuid=_text(_call(nvml, "nvmlDeviceGetUUID", handle)),
            driver_version=driver,
            cuda_version=cuda,
            utilization=_number(getattr(util, "gpu", None)),
            memory_used=_mb(getattr(mem, "used", None)),
            memory_total=_mb(getattr(mem, "total", None)),
            memory_free=_mb(getattr(mem, "free", None)),
            temperature=_number(temp),
            power_usage=_watts(_call(nvml, "nvmlDeviceGetPowerUsage", handle)),
            power_limit=_watts(_call(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)),
            # usedGpuMemory is None where the driver hides it (some containers, Windows WDDM)
            processes=[GpuProcess(p.pid, process_name(p.pid),
                                  _mb(getattr(p, "usedGpuMemory", None))) for p in procs],
        )

    def close(self) -> None:
        with self._lock:
            if self._opened and self._nvml is not None:
                with contextlib.suppress(Exception):
                    self._nvml.nvmlShutdown()
            self._nvml = None
            self._closed = True


class Inventory(Protocol):
    def devices(self) -> list[Device]: ...


class DeclaredInventory:
    def __init__(self, specs: list[DeviceSpec]):
        self._devices = [Device(s.id, s.name or s.id, s.memory_mb) for s in specs]

    def devices(self) -> list[Device]:
        return list(self._devices)


def gpu_device(reading: GpuReading) -> Device | None:
    """The placement view of a GPU; None when its memory could not be read."""
    if reading.memory_total is None:
        return None
    return Device(f"cuda:{reading.id}", reading.name or f"cuda:{reading.id}",
                  reading.memory_total, reading.memory_free,
                  {"temperature": reading.temperature, "utilization": reading.utilization,
                   "uuid": reading.uuid})


class DetectedInventory:
    """NVML GPUs (if the library and a driver are there) plus the CPU's RAM."""

    def __init__(self, reader: GpuReader | None = None) -> None:
        self.reader = reader or GpuReader()

    def devices(self) -> list[Device]:
        out = []
        for reading in self.reader.read():
            dev = gpu_device(reading)
            if dev is None:
                log.warning("GPU %d left out: NVML did not report its memory", reading.id)
            else:
                out.append(dev)
        vm = psutil.virtual_memory()
        out.append(Device("cpu", "cpu", vm.total // MB, vm.available // MB,
                          {"cpu_count": psutil.cpu_count()}))
        return out


def inventory_for(specs: list[DeviceSpec] | None, nvml_module: str | None = None) -> Inventory:
    """Declared devices when the config lists them, else detected ones (NVML from
    ``nvml_module``, ``pynvml`` by default)."""
    if specs is not None:
        return DeclaredInventory(specs)
    return DetectedInventory(GpuReader(module=nvml_module))
