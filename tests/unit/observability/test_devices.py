"""The NVML reader and the detected inventory, over a fake NVML (no GPU here)."""

from __future__ import annotations

import os
import sys

import psutil
import pytest

from modelfleet.api.devices import devices_info
from modelfleet.observability.devices import (
    DeclaredInventory,
    DetectedInventory,
    GpuReader,
    inventory_for,
)
from modelfleet.settings import DeviceSpec
from tests.fake_nvml import FakeNvml, NVMLError


def test_reader_reads_every_field_of_two_gpus() -> None:
    fake = FakeNvml()
    fake.gpus[0].processes = [(os.getpid(), 8192), (os.getpid(), None)]
    gpus = GpuReader(fake).read()
    assert [g.id for g in gpus] == [0, 1]
    first = gpus[0].as_dict()
    assert first == {
        "id": 0, "name": "NVIDIA RTX 4090", "uuid": "GPU-00000000-0000-0000-0000-000000000000",
        "driver_version": "535.86.10", "cuda_version": "12.2", "utilization": 78.0,
        "memory_used": 12288, "memory_total": 24576, "memory_free": 12288,
        "temperature": 65.0, "power_usage": 350.0, "power_limit": 450.0,
        "processes": [
            {"pid": os.getpid(), "name": psutil.Process().name(), "memory_usage": 8192},
            {"pid": os.getpid(), "name": psutil.Process().name(), "memory_usage": None},
        ],
    }
    assert first["processes"][0]["name"]  # a real name, not None
    assert gpus[1].name == "NVIDIA A100-SXM4-80GB" and gpus[1].power_usage == 60.5
    assert gpus[1].memory_free == 81920 - 1024 and gpus[1].processes == []


def test_reader_values_follow_the_device() -> None:
    fake = FakeNvml()
    reader = GpuReader(fake)
    assert reader.read()[1].temperature == 41.0
    fake.gpus[1].temperature = 88
    fake.gpus[1].utilization = 99
    assert (reader.read()[1].temperature, reader.read()[1].utilization) == (88.0, 99.0)
    assert fake.inits == 1  # initialised once, however many readings


@pytest.mark.parametrize("call, field", [
    ("nvmlDeviceGetTemperature", "temperature"),
    ("nvmlDeviceGetPowerUsage", "power_usage"),
    ("nvmlDeviceGetEnforcedPowerLimit", "power_limit"),
    ("nvmlDeviceGetUtilizationRates", "utilization"),
    ("nvmlDeviceGetUUID", "uuid"),
    ("nvmlDeviceGetName", "name"),
])
def test_reader_failing_call_nulls_one_field_of_one_gpu(call: str, field: str) -> None:
    fake = FakeNvml()
    fake.fail(call, index=1)
    gpus = GpuReader(fake).read()
    assert getattr(gpus[1], field) is None
    assert getattr(gpus[0], field) is not None
    assert gpus[1].memory_total == 81920  # the rest of the reading is intact


def test_reader_failing_memory_and_processes_and_system_calls() -> None:
    fake = FakeNvml()
    fake.gpus[0].processes = [(os.getpid(), 100)]
    for call in ("nvmlDeviceGetMemoryInfo", "nvmlDeviceGetComputeRunningProcesses",
                 "nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion_v2"):
        fake.fail(call)
    gpus = GpuReader(fake).read()
    assert all(g.memory_total is None and g.memory_used is None for g in gpus)
    assert gpus[0].processes == [] and gpus[0].driver_version is None
    assert gpus[0].cuda_version == "12.2"  # the older call answered instead
    assert gpus[0].temperature == 65.0


def test_reader_gpu_without_handle_still_listed() -> None:
    fake = FakeNvml()
    fake.fail("nvmlDeviceGetHandleByIndex", index=0)
    gpus = GpuReader(fake).read()
    assert gpus[0].id == 0 and gpus[0].name is None and gpus[0].memory_total is None
    assert gpus[1].name == "NVIDIA A100-SXM4-80GB"


def test_reader_process_of_vanished_pid_has_no_name() -> None:
    fake = FakeNvml()
    gone = max(psutil.pids()) + 100_000
    fake.gpus[0].processes = [(gone, 512)]
    procs = GpuReader(fake).read()[0].processes
    assert [(p.pid, p.name, p.memory_usage) for p in procs] == [(gone, None, 512)]


def test_reader_module_missing_means_no_gpus() -> None:
    reader = GpuReader(module="modelfleet_no_such_nvml")
    assert reader.read() == [] and reader.available is False


def test_reader_pynvml_not_installed_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert GpuReader().read() == []


def test_reader_without_driver_means_no_gpus() -> None:
    fake = FakeNvml()
    fake.init_error = NVMLError(9)  # NVML_ERROR_DRIVER_NOT_LOADED
    reader = GpuReader(fake)
    assert reader.read() == [] and reader.available is False
    reader.close()
    assert fake.shutdowns == 0  # never initialised, never shut down


def test_reader_close_shuts_down_once_and_reads_nothing_after() -> None:
    fake = FakeNvml()
    reader = GpuReader(fake)
    assert len(reader.read()) == 2
    reader.close()
    reader.close()
    assert (fake.inits, fake.shutdowns) == (1, 1)
    assert reader.read() == []


def test_reader_loads_named_module() -> None:
    gpus = GpuReader(module="tests.fake_nvml").read()
    assert [g.name for g in gpus] == ["NVIDIA RTX 4090", "NVIDIA A100-SXM4-80GB"]


def test_detected_inventory_has_gpus_with_extra_and_cpu() -> None:
    fake = FakeNvml()
    fake.fail("nvmlDeviceGetMemoryInfo", index=1)  # unplaceable: left out
    devices = DetectedInventory(GpuReader(fake)).devices()
    assert [d.id for d in devices] == ["cuda:0", "cpu"]
    gpu = devices[0]
    assert (gpu.name, gpu.total_mb, gpu.free_mb) == ("NVIDIA RTX 4090", 24576, 12288)
    assert gpu.extra is not None
    assert gpu.extra["temperature"] == 65.0 and gpu.extra["utilization"] == 78.0
    info = devices_info(devices)
    assert info["cuda"]["online"] is True
    assert info["cuda"]["info"]["devices"][0] == {
        "id": "cuda:0", "name": "NVIDIA RTX 4090", "memory_total": 24576,
        "memory_used": 12288, "memory_free": 12288, "temperature": 65.0,
        "utilization": 78.0}
    assert info["cpu"]["info"]["cpu_count"] == psutil.cpu_count()


def test_inventory_for_declared_or_detected() -> None:
    declared = inventory_for([DeviceSpec(id="cuda:0", memory_mb=1000)])
    assert isinstance(declared, DeclaredInventory)
    assert declared.devices()[0].free_mb is None
    detected = inventory_for(None, nvml_module="tests.fake_nvml")
    assert [d.id for d in detected.devices()] == ["cuda:0", "cuda:1", "cpu"]
    assert [d.id for d in inventory_for(None, "modelfleet_no_such_nvml").devices()] == ["cpu"]
