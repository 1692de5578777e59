"""Model listing and the lifecycle routes of the manager API (seed 003's shapes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from modelfleet.api.core import CoreDep
from modelfleet.engines.base import CHAT, EMBEDDING, RERANK
from modelfleet.fleet.model import ManagedModel, ModelState
from modelfleet.protocol.openai import ModelList

router = APIRouter()

ALL_MODELS = "all-models"


def _mode(model: ManagedModel) -> str:
    if CHAT in model.capabilities:
        return "Chat"
    if EMBEDDING in model.capabilities:
        return "Embedding"
    return "Reranker" if RERANK in model.capabilities else "Chat"


def model_info(model: ManagedModel) -> dict[str, Any]:
    """Everything the manager API says of one model."""
    first = model.instances[0] if model.instances else None
    return {
        "model_name": model.name,
        "aliases": model.cfg.aliases,
        "engine": model.cfg.engine,
        "status": model.state.value,
        "pid": first.pid if first else None,
        "idle_time_sec": round(model.idle_seconds(), 1),
        "mode": _mode(model),
        "supports": sorted(model.capabilities),
        "is_available": model.state is not ModelState.FAILED,
        "current_bat_path": None,
        "config_source": model.config_source,
        "failure_reason": model.failure_reason,
        "pending_requests": model.in_flight,
        "start_count": model.start_count,
        "auto_start": model.cfg.auto_start,
        "idle_timeout": model.cfg.idle_timeout,
        "endpoint": first.address if first else None,
        "instances": [
            {"address": i.address, "pid": i.pid, "role": i.role,
             "outstanding": i.outstanding, "served": i.served}
            for i in model.instances
        ],
        "last_log": model.log.ring[-1].message if model.log.ring else None,
    }


@router.get("/v1/models", response_model=ModelList, tags=["OpenAI"])
async def list_models(core: CoreDep) -> dict[str, Any]:
    """OpenAI's list, with the manager's ``aliases`` and the TGI gateway's ``models``."""
    data, entries = [], []
    for m in core.fleet.models.values():
        created = int(m.ready_at or core.started_at)
        data.append({"id": m.name, "object": "model", "created": created,
                     "owned_by": "modelfleet", "aliases": m.cfg.aliases,
                     "status": m.state.value})
        entries.append({"id": m.name, "name": m.cfg.model, "status": m.state.value,
                        "supports": sorted(m.capabilities),
                        "endpoint": m.instances[0].address if m.instances else None})
    return {"object": "list", "data": data, "models": entries}


@router.get("/api/models/{alias}/info", tags=["models"])
async def info(alias: str, core: CoreDep) -> dict[str, Any]:
    if alias == ALL_MODELS:
        models = {m.name: model_info(m) for m in core.fleet.models.values()}
        return {
            "success": True,
            "models": models,
            "total_models": len(models),
            "running_models": sum(m["status"] == "ready" for m in models.values()),
            "total_pending_requests": sum(m["pending_requests"] for m in models.values()),
        }
    return {"success": True, "model": model_info(core.fleet.get(alias))}
