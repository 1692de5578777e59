"""The system sampler over a fake NVML: schedule, history, subscribers, derived figures."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from modelfleet.observability.system import (
    SystemSample,
    SystemSampler,
    gpu_events,
    gpu_summary,
)
from modelfleet.settings import Settings
from tests.fake_nvml import FakeNvml


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, gpu_monitor_interval=3600)


async def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


async def test_sampler_start_takes_first_sample(settings: Settings) -> None:
    sampler = SystemSampler(settings, FakeNvml())
    await sampler.start()
    try:
        sample = sampler.latest()
        assert [g.name for g in sample.gpus] == ["NVIDIA RTX 4090", "NVIDIA A100-SXM4-80GB"]
        host = sample.host
        assert host.cpu_percent is not None and 0 <= host.cpu_percent <= 100
        assert host.memory_total > 0 and 0 < host.memory_percent <= 100
        assert host.disk_total and host.disk_percent is not None  # of data_dir
        assert host.process_rss and host.process_rss > 10
        assert host.cpu_count and host.load_average and len(host.load_average) == 3
        assert len(sampler.history()) == 1
    finally:
        await sampler.close()


async def test_sampler_metrics_names_and_maxima(settings: Settings) -> None:
    fake = FakeNvml()
    fake.gpus[1].temperature = 83  # the hotter GPU is not the busier one
    sampler = SystemSampler(settings, fake)
    await sampler.sample()
    m = sampler.metrics()
    assert set(m) == {"gpu_utilization", "gpu_temperature", "gpu_memory_percent",
                      "cpu_percent", "memory_percent", "disk_percent"}
    assert (m["gpu_utilization"], m["gpu_temperature"], m["gpu_memory_percent"]) == (
        78.0, 83.0, 50.0)
    assert all(isinstance(v, float) for v in m.values())


async def test_sampler_without_nvml_is_cpu_only(settings: Settings) -> None:
    settings.nvml_module = "modelfleet_no_such_nvml"
    sampler = SystemSampler(settings)
    sample = await sampler.sample()
    assert sample.gpus == [] and gpu_summary(sample) is None and gpu_events(sample) == []
    assert set(sampler.metrics()) == {"cpu_percent", "memory_percent", "disk_percent"}
    await sampler.close()


async def test_sampler_interval_change_applies_while_running(settings: Settings) -> None:
    sampler = SystemSampler(settings, FakeNvml())
    await sampler.start()
    try:
        await asyncio.sleep(0.3)
        assert len(sampler.history()) == 1  # an hour's interval: nothing more yet
        settings.gpu_monitor_interval = 0.05  # as PUT /api/config sets it
        await _wait_for(lambda: len(sampler.history()) >= 4, timeout=3)
        settings.gpu_monitor_interval = 3600
        await asyncio.sleep(0.3)  # a sample in flight may still land
        settled = len(sampler.history())
        await asyncio.sleep(0.5)
        assert len(sampler.history()) == settled
    finally:
        await sampler.close()


async def test_sampler_history_is_bounded_by_count_and_age(settings: Settings) -> None:
    sampler = SystemSampler(settings, FakeNvml(), max_history=3)
    taken = [await sampler.sample() for _ in range(5)]
    assert sampler.history() == taken[2:]
    assert sampler.history(since=taken[3].timestamp) == taken[3:]
    assert sampler.latest() is taken[-1]

    aged = SystemSampler(settings, FakeNvml(), history_s=0.15)
    first = await aged.sample()
    await asyncio.sleep(0.2)
    second = await aged.sample()
    assert first not in aged.history() and aged.history() == [second]


async def test_sampler_calls_subscribers_and_survives_a_failing_one(
        settings: Settings) -> None:
    sampler = SystemSampler(settings, FakeNvml())
    seen: list[SystemSample] = []
    events: list[dict[str, Any]] = []

    def broken(sample: SystemSample) -> None:
        raise RuntimeError("subscriber bug")

    async def feed(sample: SystemSample) -> None:
        events.extend(gpu_events(sample))

    sampler.subscribe(broken)
    unsubscribe = sampler.subscribe(seen.append)
    sampler.subscribe(feed)
    one = await sampler.sample()
    unsubscribe()
    await sampler.sample()
    assert seen == [one]
    assert len(events) == 4  # two GPUs, two samples


def test_gpu_events_have_seed_shape() -> None:
    fake = FakeNvml()
    sampler = SystemSampler(Settings(data_dir=Path("/")), fake)
    event = gpu_events(sampler.latest())[0]
    assert event["type"] == "gpu_metrics_update"
    assert set(event["data"]) == {"gpu_id", "utilization", "memory_used", "temperature",
                                  "timestamp"}
    assert (event["data"]["gpu_id"], event["data"]["memory_used"]) == (0, 12288)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["data"]["timestamp"])


def test_gpu_summary_is_first_gpu_in_gb() -> None:
    sampler = SystemSampler(Settings(data_dir=Path("/")), FakeNvml())
    assert gpu_summary(sampler.latest()) == {
        "name": "NVIDIA RTX 4090", "allocated_gb": 12.0, "reserved_gb": 12.0,
        "total_gb": 24.0, "free_gb": 12.0, "utilization_percent": 78.0}


async def test_sampler_close_stops_sampling_and_shuts_nvml_down(settings: Settings) -> None:
    fake = FakeNvml()
    settings.gpu_monitor_interval = 0.05
    sampler = SystemSampler(settings, fake)
    await sampler.start()
    await _wait_for(lambda: len(sampler.history()) >= 2)
    await sampler.close()
    count = len(sampler.history())
    await asyncio.sleep(0.3)
    assert len(sampler.history()) == count
    assert (fake.inits, fake.shutdowns) == (1, 1)
    assert (await sampler.read_gpus()) == []


async def test_sampler_read_gpus_reads_now(settings: Settings) -> None:
    fake = FakeNvml()
    sampler = SystemSampler(settings, fake)
    await sampler.start()
    fake.gpus[0].utilization = 12
    assert (await sampler.read_gpus())[0].utilization == 12.0
    assert sampler.latest().gpus[0].utilization == 78.0  # the sample is unchanged
    await sampler.close()
