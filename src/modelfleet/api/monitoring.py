"""Time series of seed 002: ``GET /api/monitoring/metrics`` and ``/performance``.

``/metrics`` takes ``start_time``, ``end_time`` (ISO 8601; the last hour by default),
``metric_type`` (gpu, cpu, memory, model; everything when absent) and ``interval``
(1m, 5m, 1h, 1d) and answers ``{metrics: [one entry per bucket], summary}``.
``/performance`` takes ``model_id`` and ``time_range`` (1h, 24h, 7d, 30d) and answers
each model's request figures over that range and the host's averages. Figures come
from the buckets ``observability/rollup.py`` writes; a bucket still open counts as far
as it has been written.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from modelfleet.api.core import Core, CoreDep
from modelfleet.errors import InvalidRequestError
from modelfleet.observability.rollup import NAMES, STEP, combine

router = APIRouter(tags=["monitoring"])

RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
          "30d": timedelta(days=30)}
MAX_BUCKETS = 5000


def _when(value: str | None, default: datetime, param: str) -> datetime:
    if value is None:
        return default
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(f"{param} must be an ISO 8601 time", param=param) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def _series(core: Core, scope: str, start: datetime, end: datetime, interval: str,
                  subject: str | None = None) -> dict[tuple[datetime, str], dict[str, float]]:
    """Buckets of ``interval``: stored as they are (1m, 1h) or combined (5m from minutes,
    1d from hours)."""
    source = "1m" if interval in ("1m", "5m") else "1h"
    rows = await core.store.rollups.query(scope, NAMES[scope], start, end, source, subject)
    return combine(((r.at, r.subject, r.name, r.value) for r in rows), STEP[interval])


def _avg(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


@router.get("/api/monitoring/metrics")
async def monitoring_metrics(
    core: CoreDep, start_time: str | None = None, end_time: str | None = None,
    metric_type: Literal["gpu", "cpu", "memory", "model"] | None = None,
    interval: Literal["1m", "5m", "1h", "1d"] = "1m",
) -> dict[str, Any]:
    end = _when(end_time, datetime.now(UTC), "end_time")
    start = _when(start_time, end - timedelta(hours=1), "start_time")
    if start >= end:
        raise InvalidRequestError("start_time must be before end_time", param="start_time")
    if (end - start).total_seconds() / STEP[interval] > MAX_BUCKETS:
        raise InvalidRequestError(f"more than {MAX_BUCKETS} buckets: use a longer interval",
                                  param="interval")
    entries: dict[datetime, dict[str, Any]] = defaultdict(dict)
    if metric_type in (None, "cpu", "memory"):
        for (at, _), v in (await _series(core, "system", start, end, interval)).items():
            if metric_type != "memory":
                entries[at]["cpu_percent"] = v.get("cpu_percent")
            if metric_type != "cpu":
                entries[at]["memory_percent"] = v.get("memory_percent")
                entries[at]["disk_percent"] = v.get("disk_percent")
    if metric_type in (None, "gpu"):
        for (at, gpu), v in (await _series(core, "gpu", start, end, interval)).items():
            entries[at].setdefault("gpus", []).append({"gpu_id": int(gpu), **v})
    if metric_type in (None, "model"):
        for (at, model), v in (await _series(core, "model", start, end, interval)).items():
            entries[at].setdefault("models", {})[model] = v
    metrics = []
    for at in sorted(entries):
        entry = {"timestamp": at.isoformat().replace("+00:00", "Z"), **entries[at]}
        gpus = entry.get("gpus", [])
        if gpus:
            entry["gpu_utilization"] = _avg([g["gpu_utilization"] for g in gpus
                                             if "gpu_utilization" in g])
            entry["gpu_memory_used"] = sum(g.get("gpu_memory_used", 0) for g in gpus)
        models = entry.get("models", {})
        if models:
            requests = sum(m.get("requests", 0) for m in models.values())
            entry["requests"] = requests
            entry["avg_response_time"] = round(sum(
                m.get("response_time_sum", 0) for m in models.values()) / requests, 4) \
                if requests else None
        metrics.append(entry)
    util = [e["gpu_utilization"] for e in metrics if e.get("gpu_utilization") is not None]
    times = [e["avg_response_time"] for e in metrics if e.get("avg_response_time") is not None]
    return {"metrics": metrics, "summary": {
        "avg_gpu_utilization": _avg(util), "max_gpu_utilization": max(util, default=None),
        "avg_cpu_percent": _avg([e["cpu_percent"] for e in metrics
                                 if e.get("cpu_percent") is not None]),
        "avg_memory_percent": _avg([e["memory_percent"] for e in metrics
                                    if e.get("memory_percent") is not None]),
        "avg_response_time": _avg(times), "buckets": len(metrics), "interval": interval,
        "start_time": start.isoformat(), "end_time": end.isoformat()}}


@router.get("/api/monitoring/performance")
async def monitoring_performance(
    core: CoreDep, model_id: Annotated[str | None, Query(max_length=200)] = None,
    time_range: Literal["1h", "24h", "7d", "30d"] = "24h",
) -> dict[str, Any]:
    end = datetime.now(UTC)
    span = RANGES[time_range]
    start = end - span
    interval = "1m" if span <= timedelta(hours=24) else "1h"
    name = core.fleet.get(model_id).name if model_id else None
    per_model = await _series(core, "model", start, end, "1d" if interval == "1h" else "1h",
                              name)
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (_, model), v in per_model.items():
        t = totals[model]
        for key in ("requests", "failed", "response_time_sum"):
            t[key] += v.get(key, 0.0)
        t["max"] = max(t.get("max", 0.0), v.get("max_response_time", 0.0))
        low = v.get("min_response_time")
        if low is not None and v.get("requests"):
            t["min"] = min(t.get("min", low), low)
    models = []
    for model, t in sorted(totals.items()):
        requests = int(t["requests"])
        models.append({
            "model_id": core.fleet.id_of(model), "model_name": model,
            "total_requests": requests, "successful_requests": requests - int(t["failed"]),
            "failed_requests": int(t["failed"]),
            "avg_response_time": round(t["response_time_sum"] / requests, 4)
            if requests else None,
            "max_response_time": round(t["max"], 4) if requests else None,
            "min_response_time": round(t.get("min", 0.0), 4) if requests else None,
            "requests_per_second": round(requests / span.total_seconds(), 4),
            "error_rate": round(t["failed"] / requests, 4) if requests else 0.0})
    system = await _series(core, "system", start, end, interval)
    gpus = await _series(core, "gpu", start, end, interval)
    return {"time_range": time_range, "models": models, "system": {
        "avg_cpu_percent": _avg([v["cpu_percent"] for v in system.values()
                                 if "cpu_percent" in v]),
        "avg_memory_percent": _avg([v["memory_percent"] for v in system.values()
                                    if "memory_percent" in v]),
        "avg_gpu_utilization": _avg([v["gpu_utilization"] for v in gpus.values()
                                     if "gpu_utilization" in v])}}
