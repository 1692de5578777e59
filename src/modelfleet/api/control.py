"""Seed 000's control routes: abort requests in flight, and the engines' profilers.

- ``POST /abort`` ``{"request_id": "…"}`` or ``{"request_ids": [...]}``: each id (ours,
  the client's X-Request-Id, or the engine's ``chatcmpl-…``/``cmpl-…``) in flight on
  this gateway is cancelled (``gateway/inflight.py``); answers ``{"aborted": [...],
  "not_found": [...], "forwarded": [...]}``: with a shared metastore, ids not found
  here are published to the other gateways, which abort those they hold.
- ``POST /start_profile`` and ``/stop_profile``: forwarded to every instance of every
  ready model whose engine can profile (``EngineAdapter.can_profile``); answers one
  item per instance, ``{model, address, role, status}``, status ``ok``, ``failed``
  (with ``detail``) or ``skipped`` (an engine without a profiler).

An admin's routes (``auth/policy.py``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import aiohttp
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from modelfleet.api.core import Core, CoreDep
from modelfleet.errors import InvalidRequestError
from modelfleet.fleet.model import Instance, ManagedModel, ModelState

router = APIRouter(tags=["control"])

PROFILE_TIMEOUT_S = 30.0  # a profiler may flush its trace to disk before answering
RequestId = Annotated[str, Field(min_length=1, max_length=256)]


class AbortBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: RequestId | None = None
    request_ids: list[RequestId] = Field([], max_length=1000)


class AbortResult(BaseModel):
    aborted: list[str]
    not_found: list[str]
    # Ids not in flight here, passed on to the other gateways of the fleet (shared
    # metastore): each aborts those it holds.
    forwarded: list[str] = []


class ProfileItem(BaseModel):
    model: str
    address: str
    role: str
    status: str  # ok, failed, skipped
    detail: str | None = None


class ProfileResult(BaseModel):
    instances: list[ProfileItem]


@router.post("/abort", response_model=AbortResult)
async def abort(body: AbortBody, core: CoreDep) -> dict[str, Any]:
    """Abort requests in flight by id; the client's stream ends with REQUEST_ABORTED."""
    ids = list(dict.fromkeys(([body.request_id] if body.request_id else [])
                             + body.request_ids))
    if not ids:
        raise InvalidRequestError("request_id or request_ids is required", param="request_id")
    found = await asyncio.gather(*(core.proxy.inflight.abort(rid) for rid in ids))
    missing = [rid for rid, ok in zip(ids, found, strict=True) if not ok]
    forwarded = missing if core.coordinator.shared and missing else []
    if forwarded:
        await core.coordinator.broadcast_abort(forwarded)
    return {"aborted": [rid for rid, ok in zip(ids, found, strict=True) if ok],
            "not_found": missing, "forwarded": forwarded}


@router.post("/start_profile", response_model=ProfileResult)
async def start_profile(core: CoreDep) -> dict[str, Any]:
    """Start the profiler of every ready instance whose engine has one."""
    return {"instances": await _profile(core, "/start_profile")}


@router.post("/stop_profile", response_model=ProfileResult)
async def stop_profile(core: CoreDep) -> dict[str, Any]:
    """Stop the profilers (engines write their traces where they were told to)."""
    return {"instances": await _profile(core, "/stop_profile")}


async def _profile(core: Core, path: str) -> list[dict[str, Any]]:
    targets = [(m, i) for m in list(core.fleet.models.values())
               if m.state is ModelState.READY for i in list(m.instances)]
    return list(await asyncio.gather(*(_one(core, m, i, path) for m, i in targets)))


async def _one(core: Core, model: ManagedModel, inst: Instance, path: str) -> dict[str, Any]:
    item: dict[str, Any] = {"model": model.name, "address": inst.address, "role": inst.role}
    if not model.adapter.can_profile(model.cfg):
        return {**item, "status": "skipped", "detail": f"{model.cfg.engine} has no profiler"}
    headers = {"Authorization": f"Bearer {model.cfg.api_key}"} if model.cfg.api_key else None
    try:
        async with (inst.session or core.session).post(
                inst.base_url + path, headers=headers,
                timeout=aiohttp.ClientTimeout(total=PROFILE_TIMEOUT_S)) as resp:
            text = (await resp.content.read(2000)).decode("utf-8", "replace")
            if resp.status < 400:
                return {**item, "status": "ok"}
            return {**item, "status": "failed", "detail": f"HTTP {resp.status}: {text[:500]}"}
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {**item, "status": "failed", "detail": f"unreachable: {exc!r}"[:500]}
