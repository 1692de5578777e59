"""Metrics over HTTP: Prometheus, seed 001's JSON, per-model stats, seed 000's text.

- ``GET /metrics`` and ``/metrics/prometheus``: the Prometheus text format. ``/metrics``
  answers seed 001's JSON instead with ``?format=json`` or ``Accept: application/json``,
  and seed 000's per-instance summary with ``?format=text``.
- ``GET /api/v1/metrics``: seed 001's object (requests, tokens, slo, latency, histogram,
  gpu, errors, alerts).
- ``GET /stats``: the same figures for each model, and the admission queues.

Gauges (running and waiting requests, the seed 001 summary gauges) are set when the
metrics are read, from the fleet and the admission gates.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelfleet import __version__
from modelfleet.api.core import Core, CoreDep
from modelfleet.fleet.model import ModelState
from modelfleet.observability import report
from modelfleet.observability.records import summary_of
from modelfleet.observability.system import gpu_summary

router = APIRouter(tags=["metrics"])


def _waiting(core: Core) -> dict[str, int]:
    stats = core.admission.stats()
    out = {name: int(gate.get("waiting", 0)) for name, gate in stats["models"].items()}
    if stats["fleet"]:
        out[""] = int(stats["fleet"].get("waiting", 0))
    return out


def _refresh_gauges(core: Core) -> None:
    prom = core.metrics.prom
    prom.running.clear()
    prom.model_up.clear()
    running = 0
    for model in core.fleet.models.values():
        prom.model_up.labels(model.name, model.state.value).set(
            1 if model.state is ModelState.READY else 0)
        for inst in model.instances:
            prom.running.labels(model.name, inst.base_url, inst.role, inst.address).set(
                inst.outstanding)
            running += inst.outstanding
    prom.waiting.clear()
    waiting = _waiting(core)
    for name, count in waiting.items():
        if name:
            prom.waiting.labels(name).set(count)
    prom.vllm_running.set(running)
    prom.vllm_waiting.set(sum(waiting.values()))
    figures = summary_of(core.metrics.all)
    prom.vllm_ttft_p95.set(figures["ttft"]["p95"] or 0)
    prom.vllm_decoding.set(figures["decode_rate"]["mean"] or 0)


def prometheus_text(core: Core) -> Response:
    _refresh_gauges(core)
    return Response(generate_latest(core.metrics.prom.registry),
                    media_type=CONTENT_TYPE_LATEST)


def v1_metrics(core: Core) -> dict[str, Any]:
    running = core.fleet.in_flight()
    failed = any(m.state is ModelState.FAILED for m in core.fleet.models.values())
    return report.v1_metrics(
        core.metrics, service="modelfleet", version=__version__,
        status="degraded" if failed else "healthy", running=running,
        waiting=sum(_waiting(core).values()), gpu=gpu_summary(core.system.latest()),
        alerts=core.alerts.active())


def instances_text(core: Core) -> str:
    rows = []
    for model in core.fleet.models.values():
        for inst in model.instances:
            series = core.metrics.instances.get(inst.base_url)
            figures = summary_of(series) if series else None
            engine = core.engine_stats.get(inst.base_url, {})
            gateway_e2e = figures["latency"]["mean"] if figures else None
            # What the gateway adds: its end-to-end time less the engine's own.
            overhead = (max(0.0, gateway_e2e - engine["e2e"])
                        if gateway_e2e is not None and "e2e" in engine else None)
            rows.append({
                "model": model.name, "role": inst.role, "address": inst.address,
                "e2e": gateway_e2e,
                "queue": figures["queue"]["mean"] if figures else None,
                "prefill": engine.get("prefill"), "tpot": engine.get("tpot"),
                "ttft": engine.get("ttft"),
                "proxy_ttft": figures["ttft"]["mean"] if figures else None,
                "proxy_overhead": overhead,
            })
    return report.instance_text(rows)


_TEXT_OR_JSON: dict[int | str, dict[str, Any]] = {200: {"description": "The metrics", "content": {
    "text/plain": {"schema": {"type": "string"}},
    "application/json": {"schema": {"type": "object"}}}}}


@router.get("/metrics", response_model=None, responses=_TEXT_OR_JSON)
async def metrics(request: Request, core: CoreDep, format: str | None = None) -> Any:
    """Prometheus text; seed 001's JSON with ``?format=json`` or ``Accept:
    application/json``; seed 000's instance summary with ``?format=text``."""
    wants = (format or "").lower()
    if wants == "json" or (not wants and "application/json" in
                           request.headers.get("accept", "")):
        return v1_metrics(core)
    if wants == "text":
        return PlainTextResponse(instances_text(core))
    return prometheus_text(core)


@router.get("/metrics/prometheus", response_model=None, responses=_TEXT_OR_JSON)
async def metrics_prometheus(core: CoreDep) -> Response:
    return prometheus_text(core)


@router.get("/api/v1/metrics")
async def api_v1_metrics(core: CoreDep) -> dict[str, Any]:
    return v1_metrics(core)


@router.get("/stats")
async def stats(core: CoreDep) -> dict[str, Any]:
    return {**report.stats(core.metrics), "admission": core.admission.stats(),
            "timestamp": time.time()}
