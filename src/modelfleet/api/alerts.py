"""Alert rules and alerts (seed 002's ``/config/alerts``), under /api and /api/v1.

- ``GET /config/alerts``: every rule, the four built-in ones (``builtin: true``, from
  ``alert_thresholds``) first, each with its live ``status``;
- ``POST /config/alerts``: a new rule (201);
- ``GET|PUT|DELETE /config/alerts/{rule_id}``: PUT takes any subset of the fields;
  built-in rules are read-only (409);
- ``GET /alerts?limit=``: ``{"active": [...], "history": [...]}``, newest first.

Webhook URLs and header values are shown to admins only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from modelfleet.api.core import CoreDep
from modelfleet.protocol.alerts import AlertRuleCreate, AlertRuleUpdate

router = APIRouter(tags=["alerts"])


def _is_admin(request: Request) -> bool:
    principal = request.scope.get("state", {}).get("principal")
    return bool(getattr(principal, "is_admin", False))


@router.get("/config/alerts")
async def list_rules(core: CoreDep, request: Request) -> list[dict[str, Any]]:
    return await core.alerts.rules(reveal=_is_admin(request))


@router.post("/config/alerts", status_code=201)
async def create_rule(core: CoreDep, body: AlertRuleCreate) -> dict[str, Any]:
    return await core.alerts.create_rule(body.fields())


@router.get("/config/alerts/{rule_id}")
async def get_rule(core: CoreDep, request: Request, rule_id: str) -> dict[str, Any]:
    return await core.alerts.rule(rule_id, reveal=_is_admin(request))


@router.put("/config/alerts/{rule_id}")
async def update_rule(core: CoreDep, rule_id: str, body: AlertRuleUpdate) -> dict[str, Any]:
    return await core.alerts.update_rule(rule_id, body.fields())


@router.delete("/config/alerts/{rule_id}")
async def delete_rule(core: CoreDep, rule_id: str) -> dict[str, Any]:
    await core.alerts.delete_rule(rule_id)
    return {"success": True, "message": f"alert rule {rule_id!r} deleted", "id": rule_id}


@router.get("/alerts")
async def alerts(core: CoreDep,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    return await core.alerts.overview(limit)
