"""System monitoring routes (seed 002): ``GET /api/system/status`` and ``/api/system/gpu``.

``status`` is built from the sampler's latest sample (CPU percent is measured
between samples); ``gpu`` reads every GPU now. Memory is in MB, as seed 002
has it; without NVML (no library, no driver) the GPU lists are empty.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from modelfleet import __version__
from modelfleet.api.core import CoreDep
from modelfleet.observability.system import iso_time

router = APIRouter(tags=["system"])

GPU_BRIEF = ("id", "name", "utilization", "memory_used", "memory_total", "temperature")


@router.get("/api/system/status")
async def system_status(core: CoreDep) -> dict[str, Any]:
    """The gateway's state, its models by state, host resources and a line per GPU."""
    sample = core.system.latest()
    states = Counter(m.state.value for m in core.fleet.models.values())
    host = asdict(sample.host)
    return {
        "status": "healthy",
        "version": __version__,
        "uptime": int(time.time() - core.started_at),
        "models": {"total": len(core.fleet.models), "running": states["ready"],
                   "stopped": states["stopped"], "error": states["failed"],
                   "starting": states["starting"], "stopping": states["stopping"]},
        # seed 002's three figures first; the rest of the host reading beside them
        "resources": {"cpu_percent": host.pop("cpu_percent"),
                      "memory_percent": host.pop("memory_percent"),
                      "disk_percent": host.pop("disk_percent"), **host},
        "gpu": [{k: getattr(g, k) for k in GPU_BRIEF} for g in sample.gpus],
        "sampled_at": iso_time(sample.timestamp),
    }


@router.get("/api/system/gpu")
async def system_gpu(core: CoreDep) -> dict[str, Any]:
    """Every GPU read now, with the processes holding memory on it."""
    return {"gpus": [g.as_dict() for g in await core.system.read_gpus()]}
