"""``GET|PUT /config`` (seed 002): the runtime configuration, under /api and /api/v1.

``PUT`` takes any subset of the fields and answers with the whole configuration
after the change; see ``modelfleet.runtime_config`` for what applies when.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from modelfleet import runtime_config
from modelfleet.api.core import CoreDep

router = APIRouter(tags=["config"])


@router.get("/config")
async def get_config(core: CoreDep) -> dict[str, Any]:
    return runtime_config.current(core.settings).model_dump(mode="json")


@router.put("/config")
async def put_config(core: CoreDep, body: Annotated[Any, Body()]) -> dict[str, Any]:
    cfg = runtime_config.merged(runtime_config.current(core.settings), body)
    await runtime_config.save(core.store, cfg)
    runtime_config.apply(core.settings, core.fleet, cfg)
    return cfg.model_dump(mode="json")
