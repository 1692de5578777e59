"""Health routes: a union of the fields each replaced system's clients read."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from fastapi import APIRouter

from modelfleet import __version__
from modelfleet.api.core import CoreDep
from modelfleet.fleet.model import ManagedModel, ModelState
from modelfleet.observability.system import gpu_summary

router = APIRouter(tags=["health"])


def _limits(core: CoreDep) -> dict[str, Any]:
    concurrent = [m.cfg.limits.max_concurrent for m in core.fleet.models.values()]
    queues = [m.cfg.limits.max_queue for m in core.fleet.models.values()]
    return {
        "max_concurrent_requests": max((c for c in concurrent if c), default=None),
        "max_queue_size": max((q for q in queues if q is not None), default=None),
        "rate_limit": None,
    }


@router.get("/")
async def root(core: CoreDep) -> dict[str, Any]:
    return {
        "message": "modelfleet API Server",
        "name": "modelfleet",
        "version": __version__,
        "models_url": "/v1/models",
        "docs_url": "/docs",
    }


@router.get("/health")
async def health(core: CoreDep) -> dict[str, Any]:
    """Liveness of the gateway, with each model's state and seed 001's ``gpu`` block
    (the first GPU at the last sample, in GB; null without a GPU)."""
    models = core.fleet.models.values()
    return {
        "status": "ok",
        "version": __version__,
        "models_count": len(core.fleet.models),
        "running_models": sum(m.state is ModelState.READY for m in models),
        "models": {m.name: m.state.value for m in models},
        "total": len(core.fleet.models),
        "gpu": gpu_summary(core.system.latest()),
        "limits": _limits(core),
    }


@router.get("/check_health")
async def check_health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/full")
async def health_full(core: CoreDep) -> dict[str, Any]:
    """Probes every running engine now; stopped models are reported as such."""
    models = list(core.fleet.models.values())
    states = await asyncio.gather(*(_probe(core, m) for m in models))
    details = {m.name: s for m, s in zip(models, states, strict=True)}
    unhealthy = [n for n, s in details.items() if s in ("unhealthy", "failed")]
    return {
        "status": "degraded" if unhealthy else "healthy",
        "details": details,
        "total": len(models),
        "healthy": sum(s == "healthy" for s in details.values()),
    }


async def _probe(core: CoreDep, model: ManagedModel) -> str:
    if model.state is not ModelState.READY:
        return model.state.value
    timeout = aiohttp.ClientTimeout(total=3)
    for inst in list(model.instances):
        try:
            async with (inst.session or core.session).get(
                    inst.base_url + model.adapter.ready_path(model.cfg), timeout=timeout) as resp:
                if resp.status != 200:
                    return "unhealthy"
        except (aiohttp.ClientError, TimeoutError):
            return "unhealthy"
    return "healthy"
