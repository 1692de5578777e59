"""Time series: per-minute and per-hour buckets of the request records and the system
samples, written to the store's ``metric_rollups`` table.

Every ``rollup_interval_s`` seconds the open minute's buckets are written (and written
again, overwritten, until the minute closes), and the hour's buckets are recomputed from
its minutes. Scopes: ``model`` (subject: the model; requests, failed, tokens and
response times), ``system`` (cpu, memory, disk percent) and ``gpu`` (subject: the GPU
index; utilization, memory used, temperature). Minutes are kept
``metrics_retention_minutes_days``, hours ``metrics_retention_days``. Queries for 5m and
1d buckets combine minutes and hours (``combine``).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelfleet.observability.periodic import Periodic
from modelfleet.observability.records import RequestRecord
from modelfleet.observability.system import SystemSample, sample_metrics
from modelfleet.store import Store
from modelfleet.store.metrics_repo import RollupRecord

log = logging.getLogger("modelfleet.rollup")

SUMS = frozenset({"requests", "failed", "prompt_tokens", "completion_tokens",
                  "response_time_sum"})
MAXES = frozenset({"max_response_time", "max_gpu_utilization"})
MINS = frozenset({"min_response_time"})
STEP = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}


def bucket(ts: float, seconds: int = 60) -> datetime:
    return datetime.fromtimestamp(ts - ts % seconds, UTC)


@dataclass
class Minute:
    """One model's requests in one minute."""

    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    response_time_sum: float = 0.0
    max_response_time: float = 0.0
    min_response_time: float | None = None
    ttfts: list[float] = field(default_factory=list)

    def add(self, rec: RequestRecord) -> None:
        self.requests += 1
        self.failed += 0 if rec.ok or rec.status == 499 else 1
        self.prompt_tokens += rec.prompt_tokens
        self.completion_tokens += rec.completion_tokens
        self.response_time_sum += rec.e2e_s
        self.max_response_time = max(self.max_response_time, rec.e2e_s)
        self.min_response_time = rec.e2e_s if self.min_response_time is None \
            else min(self.min_response_time, rec.e2e_s)
        if rec.ttft_s is not None and len(self.ttfts) < 10_000:
            self.ttfts.append(rec.ttft_s)

    def values(self) -> dict[str, float]:
        out = {"requests": float(self.requests), "failed": float(self.failed),
               "prompt_tokens": float(self.prompt_tokens),
               "completion_tokens": float(self.completion_tokens),
               "response_time_sum": self.response_time_sum,
               "avg_response_time": self.response_time_sum / self.requests,
               "max_response_time": self.max_response_time,
               "min_response_time": self.min_response_time or 0.0,
               "error_rate": self.failed / self.requests}
        if self.ttfts:
            ordered = sorted(self.ttfts)
            out["ttft_p50"] = ordered[len(ordered) // 2]
            out["ttft_p95"] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        return out


def combine(rows: Iterable[tuple[datetime, str, str, float]], seconds: int
            ) -> dict[tuple[datetime, str], dict[str, float]]:
    """(at, subject, name, value) rows → values by (bucket of ``seconds``, subject):
    counts summed, maxima and minima kept, other figures averaged, and
    ``avg_response_time`` and ``error_rate`` recomputed from the sums."""
    sums: dict[tuple[datetime, str], dict[str, float]] = defaultdict(dict)
    counts: dict[tuple[datetime, str, str], int] = defaultdict(int)
    for at, subject, name, value in rows:
        key = (bucket(at.timestamp(), seconds), subject)
        have = sums[key]
        if name in MAXES:
            have[name] = max(have.get(name, value), value)
        elif name in MINS:
            have[name] = min(have.get(name, value), value)
        else:
            have[name] = have.get(name, 0.0) + value
            counts[(key[0], subject, name)] += 1
    for (at, subject), have in sums.items():
        for name in list(have):
            if name not in SUMS | MAXES | MINS:
                have[name] /= counts[(at, subject, name)]
        if have.get("requests"):
            have["avg_response_time"] = have.get("response_time_sum", 0.0) / have["requests"]
            have["error_rate"] = have.get("failed", 0.0) / have["requests"]
    return sums


class Roller:
    def __init__(self, store: Store, settings: Any, latest: Callable[[], SystemSample]):
        self.store = store
        self.settings = settings
        self._latest = latest
        self.minutes: dict[datetime, dict[str, Minute]] = defaultdict(
            lambda: defaultdict(Minute))
        self._loop = Periodic(self.flush, lambda: settings.rollup_interval_s,
                              "writing metric rollups")
        self._pruned = 0.0
        self._minute: tuple[int, datetime] = (-1, bucket(0))

    def add(self, rec: RequestRecord) -> None:
        """A request finished (called by the metrics book; cheap)."""
        if rec.model:
            minute = int(rec.at // 60)
            if minute != self._minute[0]:  # a datetime per minute, not per request
                self._minute = (minute, bucket(rec.at))
            self.minutes[self._minute[1]][rec.model].add(rec)

    def start(self) -> None:
        self._loop.start()

    async def close(self) -> None:
        await self._loop.close()
        try:
            await self.flush()  # what the last minutes held
        except Exception:  # noqa: BLE001 - closing goes on
            log.exception("writing the last metric rollups failed")

    async def flush(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        current = bucket(now)
        records: list[RollupRecord] = []
        for at in sorted(self.minutes):
            for model, minute in self.minutes[at].items():
                records += _records(at, "1m", "model", model, minute.values())
            if at < current:  # closed: written for the last time
                del self.minutes[at]
        sample = self._latest()
        host = {k: v for k, v in sample_metrics(sample).items() if not k.startswith("gpu")}
        records += _records(current, "1m", "system", "", host)
        for gpu in sample.gpus:
            records += _records(current, "1m", "gpu", str(gpu.id), {
                "gpu_utilization": gpu.utilization, "gpu_memory_used": gpu.memory_used,
                "gpu_memory_total": gpu.memory_total, "gpu_temperature": gpu.temperature})
        await self.store.rollups.upsert_many(records)
        await self._roll_hour(current)
        if now - self._pruned > 3600:
            await self._prune(now)
            self._pruned = now

    async def _roll_hour(self, current: datetime) -> None:
        hour = bucket(current.timestamp(), 3600)
        records: list[RollupRecord] = []
        for scope in ("model", "system", "gpu"):
            rows = await self.store.rollups.query(scope, NAMES[scope], hour,
                                                  hour + timedelta(hours=1), "1m")
            merged = combine(((r.at, r.subject, r.name, r.value) for r in rows), 3600)
            for (at, subject), values in merged.items():
                records += _records(at, "1h", scope, subject, values)
        await self.store.rollups.upsert_many(records)

    async def _prune(self, now: float) -> None:
        minutes = datetime.fromtimestamp(
            now - self.settings.metrics_retention_minutes_days * 86400, UTC)
        hours = datetime.fromtimestamp(now - self.settings.metrics_retention_days * 86400, UTC)
        await self.store.rollups.delete_before(minutes, "1m")
        await self.store.rollups.delete_before(hours, "1h")


NAMES = {
    "model": ["requests", "failed", "prompt_tokens", "completion_tokens", "response_time_sum",
              "avg_response_time", "max_response_time", "min_response_time", "error_rate",
              "ttft_p50", "ttft_p95"],
    "system": ["cpu_percent", "memory_percent", "disk_percent"],
    "gpu": ["gpu_utilization", "gpu_memory_used", "gpu_memory_total", "gpu_temperature"],
}


def _records(at: datetime, interval: str, scope: str, subject: str,
             values: Mapping[str, float | None]) -> list[RollupRecord]:
    return [RollupRecord(at=at, interval=interval, scope=scope, subject=subject, name=k,
                         value=float(v)) for k, v in values.items() if v is not None]
