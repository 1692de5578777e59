"""What ``/api/config`` reads and writes: runtime settings (a key-value table) and alert
rules with the events they fired."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
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

RULE_FIELDS = ("name", "condition", "metric", "model", "op", "threshold", "for_s",
               "severity", "enabled", "channels")


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
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise InvalidRequestError(f"unknown alert rule field {sorted(unknown)[0]!r}")
    if "op" in fields and fields["op"] not in OPS:
        raise InvalidRequestError(f"op must be one of {' '.join(OPS)}", param="op")
    if "severity" in fields and fields["severity"] not in SEVERITIES:
        raise InvalidRequestError(
            f"severity must be one of {', '.join(SEVERITIES)}", param="severity"
        )
    if "for_s" in fields and not float(fields["for_s"]) >= 0:
        raise InvalidRequestError("for_s must be 0 or more", param="for_s")


class AlertsRepo:
    """Rules (``metric op threshold`` for ``for_s`` seconds, on one model or the host) and
    the events of their alerts. Conditions are parsed and channels checked before they
    reach here (``observability.alert_rules``, ``observability.notify``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_rule(
        self,
        name: str,
        metric: str,
        op: str,
        threshold: float,
        *,
        condition: str = "",
        model: str | None = None,
        for_s: float = 0.0,
        severity: str = "warning",
        enabled: bool = True,
        channels: Sequence[Mapping[str, Any]] = ({"type": "log"},),
    ) -> AlertRuleRow:
        _check_rule({"op": op, "severity": severity, "for_s": for_s})
        row = AlertRuleRow(name=name, metric=metric, op=op, threshold=float(threshold),
                           condition=condition, model=model, for_s=float(for_s),
                           severity=severity, enabled=enabled,
                           channels=[dict(c) for c in channels])
        async with self.db.write() as s:
            s.add(row)
        return row

    async def upsert_builtin(
        self, rule_id: str, *, name: str, metric: str, op: str, threshold: float,
        condition: str, severity: str, channels: Sequence[Mapping[str, Any]],
    ) -> None:
        """Insert a built-in rule's row, or bring it up to date (its threshold follows
        the settings)."""
        values = {"id": rule_id, "name": name, "metric": metric, "op": op,
                  "threshold": float(threshold), "condition": condition, "model": None,
                  "for_s": 0.0, "severity": severity, "enabled": True,
                  "channels": [dict(c) for c in channels], "builtin": True, "window_s": 60,
                  "created_at": utcnow()}
        stmt = self.db.insert(AlertRuleRow).values(values)
        changed = ("name", "metric", "op", "threshold", "condition", "severity", "channels")
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"], set_={k: getattr(stmt.excluded, k) for k in changed})
        async with self.db.write() as s:
            await s.execute(stmt)

    async def get_rule(self, rule_id: str) -> AlertRuleRow:
        async with self.db.read() as s:
            row = await s.get(AlertRuleRow, rule_id)
        if row is None:
            raise _rule_not_found(rule_id)
        return row

    async def list_rules(
        self, *, enabled_only: bool = False, builtin: bool | None = None
    ) -> Sequence[AlertRuleRow]:
        """Rules oldest first; ``builtin`` True or False keeps only those (or the others)."""
        query = select(AlertRuleRow).order_by(AlertRuleRow.created_at, AlertRuleRow.id)
        if enabled_only:
            query = query.where(AlertRuleRow.enabled.is_(True))
        if builtin is not None:
            query = query.where(AlertRuleRow.builtin.is_(builtin))
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
        model: str | None = None,
        alert_id: str | None = None,
        event_id: str | None = None,
    ) -> AlertEventRow:
        """Record a firing or resolved event; ``alert_id`` ties a resolved event to the
        firing one (a firing event is its own alert: pass its ``event_id`` as both)."""
        if state not in ALERT_STATES:
            raise InvalidRequestError(f"state must be one of {', '.join(ALERT_STATES)}")
        row = AlertEventRow(rule_id=rule_id, state=state, value=value, message=message,
                            at=at or utcnow(), model=model, alert_id=alert_id)
        if event_id is not None:
            row.id = event_id
        try:
            async with self.db.write() as s:
                s.add(row)
        except IntegrityError as exc:  # the foreign key: no such rule
            raise _rule_not_found(rule_id) from exc
        return row

    async def note_on_event(self, event_id: str, note: str) -> None:
        """Append ``note`` to an event's message (a notification that failed later)."""
        async with self.db.write() as s:
            row = await s.get(AlertEventRow, event_id)
            if row is not None:
                row.message = f"{row.message}; {note}" if row.message else note

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

    async def latest_events(self) -> Sequence[AlertEventRow]:
        """The newest event of each (rule, model) pair: what was firing when the service
        stopped. A resolved event wins a tie with a firing one."""
        newest = func.row_number().over(
            partition_by=(AlertEventRow.rule_id, AlertEventRow.model),
            order_by=(AlertEventRow.at.desc(), AlertEventRow.state.desc()),
        ).label("newest")
        ranked = select(AlertEventRow.id, newest).subquery()
        query = (select(AlertEventRow)
                 .join(ranked, ranked.c.id == AlertEventRow.id)
                 .where(ranked.c.newest == 1)
                 .order_by(AlertEventRow.at, AlertEventRow.id))
        async with self.db.read() as s:
            return (await s.scalars(query)).all()
