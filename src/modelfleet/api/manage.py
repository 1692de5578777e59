"""The model-management API (seed 002): CRUD over the store, lifecycle as tasks.

Routes are relative to a prefix; ``app.py`` includes ``router`` under ``/api`` and
``/api/v1``. Literal paths (``restart-autostart``, ``stop-all``) are declared before the
``{model_id}`` patterns so they win.

- ``GET /models``: one page, ``{items, total, page, size, pages}``.
- ``POST /models``: create in the store, then in the fleet (201).
- ``GET|PUT|DELETE /models/{model_id}`` (id, name or alias).
- ``POST /models/{model_id}/start|stop|restart``: answers at once with a ``task_id``;
  ``GET /tasks/{task_id}`` says how it went.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from modelfleet.api.core import Core, CoreDep
from modelfleet.errors import (
    FleetError,
    InvalidRequestError,
    ModelNotFoundError,
    UnavailableError,
    as_fleet_error,
)
from modelfleet.fleet.model import ManagedModel, ModelState
from modelfleet.observability.procs import process_usage
from modelfleet.protocol.admin import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    STATUS_ALIASES,
    LifecycleRequest,
    ModelCreate,
    ModelUpdate,
    fleet_states,
)
from modelfleet.store.tables import ModelRow

log = logging.getLogger("modelfleet.api.manage")

router = APIRouter(tags=["manage"])

STOP_GRACE_S = 10.0
FORCE_STOP_GRACE_S = 1.0
# Background lifecycle tasks: held here so that they are not garbage-collected.
_running: set[asyncio.Task[FleetError | None]] = set()

ROW_FIELDS = ("display_name", "description", "priority", "tags", "auto_start", "engine",
              "model")


# -- live view -------------------------------------------------------------------------


def live_of(core: Core, name: str) -> dict[str, Any]:
    """The fleet's view of one model for ``row.to_api``: only figures the gateway has."""
    model = core.fleet.models.get(name)
    if model is None:  # in the store but not managed (its config no longer validates)
        return {"status": "unavailable", "health": "unknown"}
    pids = [i.pid for i in model.instances if i.pid is not None]
    gpu_mb = sum(mb for i in model.instances if i.reservation
                 for dev, mb in i.reservation.memory.items() if dev.startswith("cuda:"))
    return {
        "status": model.state.value,
        "health": model.health,
        "failure_reason": model.failure_reason,
        "resource_usage": {
            "gpu_memory": gpu_mb,  # MB placement holds for it on GPUs
            **process_usage(pids),  # memory (RSS MB) and cpu_cores, measured
            "pid": pids[0] if pids else None,
            "pids": pids,
            "instances": len(model.instances),
            "pending_requests": model.in_flight,
        },
        "performance_stats": core.metrics.models[model.name].performance(time.monotonic()),
    }


def _detail(core: Core, row: ModelRow) -> dict[str, Any]:
    return row.to_api(live_of(core, row.name))


async def _managed(core: Core, model_id: str) -> ManagedModel:
    """The fleet's model for an id, a name or an alias (404 if none)."""
    try:
        return core.fleet.get(model_id)
    except ModelNotFoundError:
        row = await core.store.models.get(model_id)  # raises 404 for an unknown id
        try:
            return core.fleet.get(row.name)
        except ModelNotFoundError:
            raise ModelNotFoundError(
                f"model {row.name!r} is stored but not managed (its config is invalid)",
                param="model", details={"model_id": model_id},
            ) from None


async def _row(core: Core, model_id: str) -> ModelRow:
    """The stored row for an id, a name or (through the fleet) an alias."""
    try:
        return await core.store.models.get(model_id)
    except ModelNotFoundError:
        try:
            name = core.fleet.get(model_id).name
        except ModelNotFoundError:
            raise ModelNotFoundError(
                f"model {model_id!r} does not exist", param="model",
                details={"model_id": model_id},
            ) from None
        return await core.store.models.get(name)


def _as_422(exc: InvalidRequestError) -> InvalidRequestError:
    exc.status = 422
    return exc


# -- tasks -----------------------------------------------------------------------------


def _spawn(coro: Awaitable[FleetError | None]) -> asyncio.Task[FleetError | None]:
    task: asyncio.Task[FleetError | None] = asyncio.ensure_future(coro)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


async def _run_task(core: Core, task_id: str, model: ManagedModel, kind: str,
                    action: Callable[[], Awaitable[None]],
                    timeout: float | None) -> FleetError | None:
    """Run ``action`` and write how it went into the task; never raises, returns the
    error that failed it (for ``?wait=true``)."""
    error: FleetError | None = None
    try:
        await core.store.tasks.update(task_id, state="running")
        try:
            await asyncio.wait_for(action(), timeout)
        except TimeoutError:
            error = UnavailableError(
                f"{kind} of {model.name!r} did not finish within {timeout:g}s "
                f"(model is {model.state.value})", code="TASK_TIMEOUT")
        except FleetError as exc:
            error = exc
        except Exception as exc:
            log.exception("%s of %s failed", kind, model.name)
            error = as_fleet_error(exc)
        if error is None and kind != "stop" and model.state is not ModelState.READY:
            error = UnavailableError(model.failure_reason or f"model is {model.state.value}",
                                     code="MODEL_NOT_READY")
        if error is not None:
            await core.store.tasks.update(task_id, state="failed", message=error.message)
        else:
            await core.store.tasks.update(
                task_id, state="succeeded",
                message=f"model {model.name!r} is {model.state.value}")
    except Exception:  # the store itself failed; nothing left to tell
        log.exception("task %s of %s could not be recorded", task_id, model.name)
    return error


async def _launch(core: Core, model: ManagedModel, kind: str,
                  body: LifecycleRequest) -> tuple[str, asyncio.Task[FleetError | None]]:
    grace = FORCE_STOP_GRACE_S if body.force else STOP_GRACE_S

    async def start() -> None:
        await model.start()

    async def stop() -> None:
        await model.stop(grace=grace)

    async def restart() -> None:
        await model.stop(grace=grace)
        await model.start()

    actions = {"start": start, "stop": stop, "restart": restart}
    row = await core.store.tasks.create(kind, model.name, message=f"{kind} requested")
    task = _spawn(_run_task(core, row.id, model, kind, actions[kind], body.timeout))
    return row.id, task


_WORDS = {"start": "starting", "stop": "stopping", "restart": "restarting"}


async def _lifecycle(core: Core, model_id: str, kind: str, body: LifecycleRequest | None,
                     wait: bool) -> dict[str, Any]:
    """Launch the task and answer at once, or (``wait``) when it is over: then a failed
    task is the error that failed it (e.g. 503 MODEL_START_FAILED), as before tasks."""
    model = await _managed(core, model_id)
    task_id, task = await _launch(core, model, kind, body or LifecycleRequest())
    if not wait:
        return {"success": True, "message": f"model {model.name!r} {_WORDS[kind]}",
                "task_id": task_id, "model_name": model.name}
    error = await asyncio.shield(task)
    if error is not None:
        error.extra = {**error.extra, "task_id": task_id}
        raise error
    return {"success": True, "message": f"model {model.name!r} is {model.state.value}",
            "task_id": task_id, "model_name": model.name, "status": model.state.value}


LifecycleBody = Annotated[LifecycleRequest | None, Body()]
WaitQuery = Annotated[bool, Query(description="answer when the task is over")]


# -- literal paths first ---------------------------------------------------------------


@router.post("/models/restart-autostart")
async def restart_autostart(core: CoreDep) -> dict[str, Any]:
    """Seed 003: restart every ``auto_start`` model (in the background, one task each)."""
    tasks: dict[str, str] = {}
    for model in list(core.fleet.models.values()):
        if model.cfg.auto_start:
            tasks[model.name], _ = await _launch(core, model, "restart", LifecycleRequest())
    return {"success": True, "message": f"restarting {len(tasks)} autostart models",
            "started_models": list(tasks), "task_ids": tasks}


@router.post("/models/stop-all")
async def stop_all(core: CoreDep) -> dict[str, Any]:
    """Seed 003: stop every model; answers once they are stopped."""
    await core.fleet.stop_all()
    left = [m.name for m in core.fleet.models.values() if m.state is not ModelState.STOPPED]
    if left:
        return {"success": False, "message": f"models not stopped: {', '.join(left)}"}
    return {"success": True, "message": "all models stopped"}


@router.get("/tasks/{task_id}")
async def get_task(task_id: str, core: CoreDep) -> dict[str, Any]:
    return (await core.store.tasks.get(task_id)).to_api()


# -- collection ------------------------------------------------------------------------


@router.get("/models")
async def list_models(
    core: CoreDep,
    page: Annotated[int, Query(ge=1)] = 1,
    size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    status: str | None = None,
    framework: str | None = None,
    tag: str | None = None,
) -> dict[str, Any]:
    names: set[str] | None = None
    if status:
        states = fleet_states(status)
        if states is None:
            raise _as_422(InvalidRequestError(
                f"status must be one of {', '.join(STATUS_ALIASES)}", param="status"))
        names = {m.name for m in core.fleet.models.values() if m.state.value in states}
    rows, total = await core.store.models.list(page, size, framework=framework or None,
                                               tag=tag or None, names=names)
    return {"items": [_detail(core, row) for row in rows], "total": total, "page": page,
            "size": size, "pages": math.ceil(total / size) if total else 0}


@router.post("/models", status_code=201)
async def create_model(body: ModelCreate, core: CoreDep) -> dict[str, Any]:
    try:
        row = await core.store.models.create(body.store_fields(), source="api")
    except InvalidRequestError as exc:
        raise _as_422(exc) from None
    try:
        model = core.fleet.add(row.to_model_config())
        core.fleet.bind_id(row.name, row.id)
    except BaseException:
        await core.store.models.delete(row.id)
        raise
    if model.cfg.auto_start:
        core.fleet.start_in_background(model)
    return {"id": row.id, "name": row.name, "status": "created",
            "message": f"model {row.name!r} created", "success": True}


# -- one model -------------------------------------------------------------------------


@router.get("/models/{model_id}")
async def get_model(model_id: str, core: CoreDep) -> dict[str, Any]:
    return _detail(core, await _row(core, model_id))


def _revert_fields(old: ModelRow, new: ModelRow) -> dict[str, Any]:
    """The update that puts ``old``'s values back over ``new`` (merged dicts included)."""
    fields: dict[str, Any] = {k: getattr(old, k) for k in ROW_FIELDS}
    for key in ("config", "resource_requirements"):
        before, after = dict(getattr(old, key) or {}), dict(getattr(new, key) or {})
        fields[key] = {**{k: None for k in after if k not in before}, **before}
    return fields


@router.put("/models/{model_id}")
async def update_model(model_id: str, body: ModelUpdate, core: CoreDep) -> dict[str, Any]:
    old = await _row(core, model_id)
    fields = body.store_fields()
    if fields.get("name") not in (None, old.name):
        raise _as_422(InvalidRequestError("a model cannot be renamed", param="name"))
    fields.pop("name", None)
    try:
        row = await core.store.models.update(old.id, fields)
    except InvalidRequestError as exc:
        raise _as_422(exc) from None
    try:
        model = core.fleet.update(row.to_model_config())
    except BaseException:
        await core.store.models.update(old.id, _revert_fields(old, row))
        raise
    if row.auto_start and not old.auto_start and model.state is ModelState.STOPPED:
        core.fleet.start_in_background(model)
    return _detail(core, row)


@router.delete("/models/{model_id}")
async def delete_model(model_id: str, core: CoreDep) -> dict[str, Any]:
    row = await _row(core, model_id)
    if row.name in core.fleet.models:
        await core.fleet.remove(row.name)
    await core.store.models.delete(row.id)
    return {"success": True, "message": f"model {row.name!r} deleted", "id": row.id}


@router.post("/models/{model_id}/start")
async def start_model(model_id: str, core: CoreDep,
                      body: LifecycleBody = None, wait: WaitQuery = False) -> dict[str, Any]:
    return await _lifecycle(core, model_id, "start", body, wait)


@router.post("/models/{model_id}/stop")
async def stop_model(model_id: str, core: CoreDep,
                     body: LifecycleBody = None, wait: WaitQuery = False) -> dict[str, Any]:
    return await _lifecycle(core, model_id, "stop", body, wait)


@router.post("/models/{model_id}/restart")
async def restart_model(model_id: str, core: CoreDep, body: LifecycleBody = None,
                        wait: WaitQuery = False) -> dict[str, Any]:
    return await _lifecycle(core, model_id, "restart", body, wait)
