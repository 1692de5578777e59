"""A stand-in for ``pynvml``: two GPUs whose readings tests set, and calls made to fail.

There is no GPU where the tests run, so NVML is faked at the module boundary
the reader uses. ``FakeNvml()`` is one independent fake for unit tests; the
module itself also serves as an NVML module (its attributes are those of a
default ``FakeNvml``), so a gateway started with ``nvml_module: tests.fake_nvml``
sees the two default GPUs, with its own process on GPU 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_TEMPERATURE_GPU = 0
MIB = 1024 * 1024


class NVMLError(Exception):
    """What pynvml raises for every failing call."""

    def __init__(self, value: int = 999):
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FakeGpu:
    """Settable readings of one GPU; memory in MiB, power in mW as NVML reports it."""

    name: str
    uuid: str
    total_mb: int
    used_mb: int
    utilization: int
    temperature: int
    power_mw: int
    power_limit_mw: int
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, MiB)


def default_gpus() -> list[FakeGpu]:
    return [
        FakeGpu("NVIDIA RTX 4090", "GPU-00000000-0000-0000-0000-000000000000", 24576, 12288,
                78, 65, 350_000, 450_000, [(os.getpid(), 8192)]),
        FakeGpu("NVIDIA A100-SXM4-80GB", "GPU-11111111-1111-1111-1111-111111111111", 81920,
                1024, 5, 41, 60_500, 400_000, []),
    ]


class FakeNvml:
    """The pynvml functions the reader calls, over ``gpus``.

    ``fail(name, index)`` makes the function ``name`` raise NVMLError (for the GPU
    at ``index`` only, when given); ``init_error`` makes ``nvmlInit`` raise, as it
    does without a driver.
    """

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU

    def __init__(self, gpus: list[FakeGpu] | None = None):
        self.gpus = default_gpus() if gpus is None else gpus
        self.driver_version = "535.86.10"
        self.cuda_version = 12020
        self.init_error: NVMLError | None = None
        self.inits = 0
        self.shutdowns = 0
        self._failing: set[tuple[str, int | None]] = set()

    def fail(self, name: str, index: int | None = None) -> None:
        self._failing.add((name, index))

    def _check(self, name: str, handle: int | None = None) -> FakeGpu | None:
        if (name, None) in self._failing or (handle is not None and (name, handle)
                                              in self._failing):
            raise NVMLError()
        if self.inits <= self.shutdowns:
            raise NVMLError(1)  # NVML_ERROR_UNINITIALIZED
        return self.gpus[handle] if handle is not None else None

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self._check("nvmlShutdown")
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._check("nvmlDeviceGetHandleByIndex", index)
        return index

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._check("nvmlSystemGetCudaDriverVersion")
        return self.cuda_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._check("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda_version

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        gpu = self._check("nvmlDeviceGetName", handle)
        assert gpu is not None
        return gpu.name.encode()  # older pynvml returns bytes: the reader must decode

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        gpu = self._check("nvmlDeviceGetUUID", handle)
        assert gpu is not None
        return gpu.uuid

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        gpu = self._check("nvmlDeviceGetUtilizationRates", handle)
        assert gpu is not None
        return SimpleNamespace(gpu=gpu.utilization, memory=gpu.utilization // 2)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        gpu = self._check("nvmlDeviceGetMemoryInfo", handle)
        assert gpu is not None
        return SimpleNamespace(total=gpu.total_mb * MIB, used=gpu.used_mb * MIB,
                               free=(gpu.total_mb - gpu.used_mb) * MIB)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        gpu = self._check("nvmlDeviceGetTemperature", handle)
        assert gpu is not None and sensor == NVML_TEMPERATURE_GPU
        return gpu.temperature

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        gpu = self._check("nvmlDeviceGetPowerUsage", handle)
        assert gpu is not None
        return gpu.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        gpu = self._check("nvmlDeviceGetEnforcedPowerLimit", handle)
        assert gpu is not None
        return gpu.power_limit_mw

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        gpu = self._check("nvmlDeviceGetComputeRunningProcesses", handle)
        assert gpu is not None
        return [SimpleNamespace(pid=pid, usedGpuMemory=None if mib is None else mib * MIB)
                for pid, mib in gpu.processes]


_default = FakeNvml()


def __getattr__(name: str) -> Any:
    """The module as an NVML module: the default fake's functions."""
    return getattr(_default, name)
