"""The host's figures over time: every GPU (NVML) plus CPU, RAM and disk (psutil).

``SystemSampler`` takes a ``SystemSample`` at ``start()`` and then every
``settings.gpu_monitor_interval`` seconds, read again each cycle so that a
change made through ``/api/config`` applies within a second. Samples are kept
in memory for a day (at most ``MAX_HISTORY`` of them) and handed to each
subscriber as they are taken. Readings run in a worker thread: NVML and
psutil calls block, and a slow driver must not stall the event loop.

CPU percent is measured between two samples, from the sampler's own CPU-time
counters, so that nobody else's ``psutil.cpu_percent()`` calls shift it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psutil

from modelfleet.observability.devices import MB, GpuReader, GpuReading
from modelfleet.settings import Settings

log = logging.getLogger("modelfleet.system")

HISTORY_S = 24 * 3600.0
MAX_HISTORY = 10_000
TICK_S = 1.0  # how soon a shortened interval takes effect
CPU_WINDOW_S = 0.1  # the shortest span a CPU percent is measured over

Subscriber = Callable[["SystemSample"], Any]


@dataclass(frozen=True, slots=True)
class HostReading:
    """CPU, RAM and disk (of ``data_dir``) now; memory and disk in MB. None: unreadable."""

    cpu_percent: float | None
    cpu_count: int | None
    load_average: list[float] | None  # 1, 5 and 15 minutes
    memory_total: int
    memory_used: int
    memory_percent: float
    disk_total: int | None
    disk_used: int | None
    disk_percent: float | None
    process_rss: int | None  # this gateway process


@dataclass(frozen=True, slots=True)
class SystemSample:
    timestamp: float  # seconds since the epoch
    gpus: list[GpuReading]
    host: HostReading

    def as_dict(self) -> dict[str, Any]:
        return {"timestamp": iso_time(self.timestamp),
                "gpus": [g.as_dict() for g in self.gpus], **asdict(self.host)}


def iso_time(ts: float) -> str:
    """``2024-01-01T12:00:00Z``, as seed 002's events write times."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class CpuClock:
    """Busy percent of all CPUs since the previous call, the first measured from creation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = time.monotonic()
        self._last = self._times()

    @staticmethod
    def _times() -> tuple[float, float]:
        t = psutil.cpu_times()
        # As psutil counts it: guest time is already inside user/nice; iowait is idle.
        total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
        return total, total - t.idle - getattr(t, "iowait", 0.0)

    def percent(self) -> float | None:
        """Blocks up to ``CPU_WINDOW_S`` when called right after the previous reading."""
        with self._lock:
            wait = CPU_WINDOW_S - (time.monotonic() - self._at)
            if wait > 0:
                time.sleep(wait)
            total, busy = self._times()
            d_total, d_busy = total - self._last[0], busy - self._last[1]
            self._last, self._at = (total, busy), time.monotonic()
        if d_total <= 0:
            return None
        return round(min(100.0, max(0.0, 100 * d_busy / d_total)), 1)


def read_host(data_dir: str | os.PathLike[str], cpu: CpuClock) -> HostReading:
    vm = psutil.virtual_memory()
    try:
        load: list[float] | None = [round(x, 2) for x in psutil.getloadavg()]
    except (OSError, AttributeError):
        load = None
    try:
        disk = psutil.disk_usage(os.fspath(data_dir))
        disk_figures: tuple[int | None, int | None, float | None] = (
            disk.total // MB, disk.used // MB, disk.percent)
    except OSError:
        disk_figures = (None, None, None)
    try:
        rss: int | None = psutil.Process().memory_info().rss // MB
    except psutil.Error:
        rss = None
    return HostReading(
        cpu_percent=cpu.percent(), cpu_count=psutil.cpu_count(), load_average=load,
        memory_total=vm.total // MB, memory_used=vm.used // MB, memory_percent=vm.percent,
        disk_total=disk_figures[0], disk_used=disk_figures[1], disk_percent=disk_figures[2],
        process_rss=rss)


def gpu_events(sample: SystemSample) -> list[dict[str, Any]]:
    """Seed 002's ``gpu_metrics_update`` WebSocket events, one per GPU."""
    when = iso_time(sample.timestamp)
    return [{"type": "gpu_metrics_update",
             "data": {"gpu_id": g.id, "utilization": g.utilization,
                      "memory_used": g.memory_used, "temperature": g.temperature,
                      "timestamp": when}} for g in sample.gpus]


def _gb(mb: int | None) -> float | None:
    return None if mb is None else round(mb / 1024, 2)


def gpu_summary(sample: SystemSample) -> dict[str, Any] | None:
    """Seed 001's ``gpu`` block (``/health``, ``/api/v1/metrics``) of the first GPU, in GB;
    None without a GPU. ``reserved_gb`` is what the driver has handed out, as
    ``allocated_gb``: NVML sees no allocator cache."""
    if not sample.gpus:
        return None
    g = sample.gpus[0]
    return {"name": g.name, "allocated_gb": _gb(g.memory_used),
            "reserved_gb": _gb(g.memory_used), "total_gb": _gb(g.memory_total),
            "free_gb": _gb(g.memory_free), "utilization_percent": g.utilization}


def _max(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def sample_metrics(sample: SystemSample) -> dict[str, float]:
    """The figures alert rules read; one that cannot be read (no GPU) is left out."""
    mem = [100 * g.memory_used / g.memory_total for g in sample.gpus
           if g.memory_used is not None and g.memory_total]
    figures = {
        "gpu_utilization": _max([g.utilization for g in sample.gpus]),
        "gpu_temperature": _max([g.temperature for g in sample.gpus]),
        "gpu_memory_percent": _max([round(m, 1) for m in mem]),
        "cpu_percent": sample.host.cpu_percent,
        "memory_percent": sample.host.memory_percent,
        "disk_percent": sample.host.disk_percent,
    }
    return {k: v for k, v in figures.items() if v is not None}


class SystemSampler:
    """Samples the host now and then; see the module docstring.

    ``nvml`` is handed to the ``GpuReader`` (a fake in tests); None reads through
    ``settings.nvml_module`` or ``pynvml``.
    """

    def __init__(self, settings: Settings, nvml: Any = None, *,
                 history_s: float = HISTORY_S, max_history: int = MAX_HISTORY):
        self.settings = settings
        self.reader = GpuReader(nvml, module=settings.nvml_module)
        self._cpu = CpuClock()
        self._history_s = history_s
        self._ring: deque[SystemSample] = deque(maxlen=max_history)
        self._subscribers: list[Subscriber] = []
        self._task: asyncio.Task[None] | None = None
        self._taken_at = 0.0  # monotonic time of the last sample

    async def start(self) -> None:
        """Take the first sample, then keep sampling in a background task."""
        await self.sample()
        self._task = asyncio.create_task(self._run(), name="system-sampler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.reader.close)  # waits for a reading in flight

    def _take(self) -> SystemSample:
        gpus = self.reader.read()
        host = read_host(self.settings.data_dir, self._cpu)
        return SystemSample(time.time(), gpus, host)

    async def sample(self) -> SystemSample:
        """Take a sample now: keep it and hand it to every subscriber."""
        sample = await asyncio.to_thread(self._take)
        self._keep(sample)
        for callback in list(self._subscribers):
            try:
                result = callback(sample)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("a system sample subscriber failed")
        return sample

    def _keep(self, sample: SystemSample) -> None:
        self._taken_at = time.monotonic()
        self._ring.append(sample)
        horizon = sample.timestamp - self._history_s
        while self._ring and self._ring[0].timestamp < horizon:
            self._ring.popleft()

    async def _run(self) -> None:
        while True:
            due = self._taken_at + self.settings.gpu_monitor_interval
            await asyncio.sleep(min(TICK_S, max(0.0, due - time.monotonic())))
            if time.monotonic() >= self._taken_at + self.settings.gpu_monitor_interval:
                try:
                    await self.sample()
                except Exception:  # one bad reading must not end the series
                    log.exception("system sample failed")
                    self._taken_at = time.monotonic()

    def latest(self) -> SystemSample:
        """The last sample; taken now (blocking briefly) if there is none yet."""
        if not self._ring:
            self._keep(self._take())
        return self._ring[-1]

    def history(self, since: float | None = None) -> list[SystemSample]:
        """Kept samples, oldest first; those taken at or after ``since`` (epoch seconds)."""
        return [s for s in self._ring if since is None or s.timestamp >= since]

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(sample)`` (a function or a coroutine function) on each new
        sample; it runs in the sampling loop, so it should be quick. Returns the
        function that unsubscribes it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def metrics(self) -> dict[str, float]:
        """``gpu_utilization``, ``gpu_temperature``, ``gpu_memory_percent`` (each the
        maximum over GPUs), ``cpu_percent``, ``memory_percent``, ``disk_percent``."""
        return sample_metrics(self.latest())

    async def read_gpus(self) -> list[GpuReading]:
        """Every GPU read now, outside the sampling schedule."""
        return await asyncio.to_thread(self.reader.read)
