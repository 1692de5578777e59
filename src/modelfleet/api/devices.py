"""``GET /api/devices/info`` (seed 003): the devices models are placed on.

``cuda`` lists the GPUs and ``cpu`` the host's processor and RAM, from the same
inventory placement uses (NVML and psutil, or the config's declared devices);
``online`` says whether any device of that kind is there. Memory is in MB,
temperature in °C and utilization in percent; figures that cannot be measured
(declared devices, a query the driver refuses) are null.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from modelfleet.api.core import CoreDep
from modelfleet.observability.devices import Device

router = APIRouter(tags=["devices"])


def _memory(dev: Device) -> dict[str, Any]:
    used = None if dev.free_mb is None else dev.total_mb - dev.free_mb
    return {"memory_total": dev.total_mb, "memory_used": used, "memory_free": dev.free_mb}


def devices_info(devices: list[Device]) -> dict[str, Any]:
    gpus = [d for d in devices if d.id.startswith("cuda:")]
    cpus = [d for d in devices if d.id == "cpu"]
    cuda = {"device_count": len(gpus), "devices": [
        {"id": d.id, "name": d.name, **_memory(d),
         "temperature": (d.extra or {}).get("temperature"),
         "utilization": (d.extra or {}).get("utilization")} for d in gpus]}
    cpu: dict[str, Any] = {"cpu_count": None, "memory_total": None, "memory_used": None,
                           "memory_free": None}
    if cpus:
        cpu = {"cpu_count": (cpus[0].extra or {}).get("cpu_count"), **_memory(cpus[0])}
    return {"cuda": {"online": bool(gpus), "info": cuda},
            "cpu": {"online": bool(cpus), "info": cpu}}


@router.get("/api/devices/info")
async def get_devices_info(core: CoreDep) -> dict[str, Any]:
    return {"success": True,
            "devices": devices_info(core.fleet.placement.inventory.devices())}
