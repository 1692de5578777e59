"""What ``/api/config`` reads and writes: runtime settings (a key-value table) and alert
rules with the events they fired."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from modelfleet.errors import InvalidRequestError, NotFoundError
from modelfleet.store.db import Database
from modelfleet.store.tables import (
    ALERT_STATES,
    OPS,
    SEVERITIES,
    AlertEventRow,
    AlertRuleRow,
    SettingRow,
    utcnow,
)

_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
_RULE_FIELDS = ("name", "metric", "op", "threshold", "window_s", "severity", "enabled")


def parse_condition(condition: str) -> tuple[str, str, float]:
    """``"gpu_utilization > 90"`` (seed 002's form) as (metric, op, threshold)."""
    match = _CONDITION.match(condition)
    if not match:
        raise InvalidRequestError(
            f"condition {condition!r} is not '<metric> <op> <number>'", param="condition"
        )
    return match.group(1), match.group(2), float(match.group(3))


class SettingsRepo:
    """JSON values by key. The API keeps each top-level config field under its own key."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: str, default: Any = None) -> Any:
        async with self.db.read() as s:
            row = await s.get(SettingRow, key)
            return default if row is None else row.value

    async def all(self) -> dict[str, Any]:
        async with self.db.read() as s:
            return {row.key: row.value for row in await s.scalars(select(SettingRow))}

    async def put(self, key: str, value: Any) -> None:
        await self.put_many({key: value})

    async def put_many(self, values: Mapping[str, Any]) -> None:
        """Insert or replace every key in one transaction (an atomic ``PUT /api/config``)."""
        if not values:
            return
        now = utcnow()
        rows = [{"key": k, "value": v, "updated_at": now} for k, v in values.items()]
        stmt = self.db.insert(SettingRow)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        async with self.db.write() as s:
            await s.execute(stmt, rows)

    async def delete(self, key: str) -> bool:
        async with self.db.write() as s:
            done = await s.execute(delete(SettingRow).where(SettingRow.key == key))
            return bool(getattr(done, "rowcount", 0))


def _rule_not_found(rule_id: str) -> NotFoundError:
    return NotFoundError(f"alert rule {rule_id!r} does not exist", code="ALERT_RULE_NOT_FOUND")


def _check_rule(fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - set(_RULE_FIELDS)
    if unknown:
        raise InvalidRequestError(f"unknown alert rule field {sorted(unknown)[0]!r}")
    if "op" in fields and fields["op"] not in OPS:
        raise InvalidRequestError(f"op must be one of {' '.join(OPS)}", param="op")
    if "severity" in fields and fields["severity"] not in SEVERITIES:
        raise InvalidRequestError(
            f"severity must be one of {', '.join(SEVERITIES)}", param="severity"
        )
    if "window_s" in fields and int(fields["window_s"]) < 1:
        raise InvalidRequestError("window_s must be 1 or more", param="window_s")


class AlertsRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_rule(
        self,
        name: str,
        metric: str,
        op: str,
        threshold: float,
        *,
        window_s: int = 60,
        severity: str = "warning",
        enabled: bool = True,
    ) -> AlertRuleRow:
        """A rule "``metric op threshold`` over the last ``window_s`` seconds"."""
        _check_rule({"op": op, "severity": severity, "window_s": window_s})
        row = AlertRuleRow(name=name, metric=metric, op=op, threshold=float(threshold),
                           window_s=int(window_s), severity=severity, enabled=enabled)
        async with self.db.write() as s:
            s.add(row)
        return row

    async def get_rule(self, rule_id: str) -> AlertRuleRow:
        async with self.db.read() as s:
            row = await s.get(AlertRuleRow, rule_id)
        if row is None:
            raise _rule_not_found(rule_id)
        return row

    async def list_rules(self, *, enabled_only: bool = False) -> Sequence[AlertRuleRow]:
        query = select(AlertRuleRow).order_by(AlertRuleRow.created_at, AlertRuleRow.id)
        if enabled_only:
            query = query.where(AlertRuleRow.enabled.is_(True))
        async with self.db.read() as s:
            return (await s.scalars(query)).all()

    async def update_rule(self, rule_id: str, fields: Mapping[str, Any]) -> AlertRuleRow:
        """Change the given fields of a rule (those of ``create_rule``)."""
        _check_rule(fields)
        async with self.db.write() as s:
            row = await s.get(AlertRuleRow, rule_id)
            if row is None:
                raise _rule_not_found(rule_id)
            for key, value in fields.items():
                setattr(row, key, value)
        return row

    async def delete_rule(self, rule_id: str) -> None:
        """Delete a rule and (by cascade) its events; NotFoundError if unknown."""
        async with self.db.write() as s:
            done = await s.execute(delete(AlertRuleRow).where(AlertRuleRow.id == rule_id))
            if not getattr(done, "rowcount", 0):
                raise _rule_not_found(rule_id)

    async def add_event(
        self,
        rule_id: str,
        state: str,
        value: float | None = None,
        message: str = "",
        *,
        at: datetime | None = None,
    ) -> AlertEventRow:
        if state not in ALERT_STATES:
            raise InvalidRequestError(f"state must be one of {', '.join(ALERT_STATES)}")
        row = AlertEventRow(rule_id=rule_id, state=state, value=value, message=message,
                            at=at or utcnow())
        try:
            async with self.db.write() as s:
                s.add(row)
        except IntegrityError as exc:  # the foreign key: no such rule
            raise _rule_not_found(rule_id) from exc
        return row

    async def events(
        self,
        *,
        since: datetime | None = None,
        rule_id: str | None = None,
        limit: int = 100,
    ) -> Sequence[AlertEventRow]:
        """Events newest first, at or after ``since``."""
        query = select(AlertEventRow).order_by(AlertEventRow.at.desc(), AlertEventRow.id)
        if since is not None:
            query = query.where(AlertEventRow.at >= since)
        if rule_id is not None:
            query = query.where(AlertEventRow.rule_id == rule_id)
        async with self.db.read() as s:
            return (await s.scalars(query.limit(limit))).all()
