"""The two append-mostly tables of observability: the request log and metric rollups.

Both are written in batches by background flushers (never once per request on the hot
path), so the write methods take many records and issue one executemany.
Time ranges are half-open: ``start``/``since`` included, ``end``/``until`` excluded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypedDict

from sqlalchemy import delete, select

from modelfleet.errors import InvalidRequestError
from modelfleet.store.db import Database
from modelfleet.store.tables import INTERVALS, SCOPES, MetricRollupRow, RequestLogRow


class _RequestRequired(TypedDict):
    at: datetime
    model: str
    status: int


class RequestRecord(_RequestRequired, total=False):
    """One finished request, as the gateway records it."""

    instance: str | None
    key_id: str | None
    error_code: str | None
    prompt_tokens: int
    completion_tokens: int
    queue_ms: float | None
    ttft_ms: float | None
    e2e_ms: float | None


class RollupRecord(TypedDict):
    """One metric's value over the bucket of ``interval`` that starts at ``at``."""

    at: datetime
    interval: str
    scope: str
    subject: str
    name: str
    value: float


_REQUEST_DEFAULTS = {
    "instance": None, "key_id": None, "error_code": None, "prompt_tokens": 0,
    "completion_tokens": 0, "queue_ms": None, "ttft_ms": None, "e2e_ms": None,
}


class RequestLogRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_many(self, records: Iterable[RequestRecord]) -> int:
        """Append records; returns how many."""
        # Every row carries every key: executemany needs one parameter shape.
        rows = [{**_REQUEST_DEFAULTS, **record} for record in records]
        if rows:
            async with self.db.write() as s:
                await s.execute(self.db.insert(RequestLogRow), rows)
        return len(rows)

    async def query(
        self,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        limit: int = 10_000,
    ) -> Sequence[RequestLogRow]:
        """Records oldest first, at most ``limit`` of them."""
        query = select(RequestLogRow).order_by(RequestLogRow.at, RequestLogRow.id)
        if model is not None:
            query = query.where(RequestLogRow.model == model)
        if since is not None:
            query = query.where(RequestLogRow.at >= since)
        if until is not None:
            query = query.where(RequestLogRow.at < until)
        async with self.db.read() as s:
            return (await s.scalars(query.limit(limit))).all()

    async def delete_before(self, before: datetime) -> int:
        """Retention: drop records older than ``before``; returns how many went."""
        async with self.db.write() as s:
            done = await s.execute(delete(RequestLogRow).where(RequestLogRow.at < before))
            return int(getattr(done, "rowcount", 0) or 0)


def _check(interval: str | None = None, scope: str | None = None) -> None:
    if interval is not None and interval not in INTERVALS:
        raise InvalidRequestError(
            f"interval must be one of {', '.join(INTERVALS)}", param="interval"
        )
    if scope is not None and scope not in SCOPES:
        raise InvalidRequestError(f"scope must be one of {', '.join(SCOPES)}", param="scope")


class RollupsRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def upsert_many(self, records: Iterable[RollupRecord]) -> int:
        """Insert or overwrite values by (at, interval, scope, subject, name).

        A bucket written twice holds the last value (a rollup of a bucket still open is
        rewritten until it closes); returns how many distinct buckets were written.
        """
        unique: dict[tuple[object, ...], dict[str, object]] = {}
        for r in records:
            _check(r["interval"], r["scope"])
            key = (r["at"], r["interval"], r["scope"], r["subject"], r["name"])
            # PostgreSQL refuses one statement that updates a row twice: last one wins.
            unique[key] = {**r, "value": float(r["value"])}
        if not unique:
            return 0
        stmt = self.db.insert(MetricRollupRow)
        stmt = stmt.on_conflict_do_update(
            index_elements=["scope", "interval", "subject", "name", "at"],
            set_={"value": stmt.excluded.value},
        )
        async with self.db.write() as s:
            await s.execute(stmt, list(unique.values()))
        return len(unique)

    async def query(
        self,
        scope: str,
        names: Sequence[str],
        start: datetime,
        end: datetime,
        interval: str,
        subject: str | None = None,
    ) -> Sequence[MetricRollupRow]:
        """Values of ``names`` in [start, end), by time then subject then name.

        ``subject`` None means every subject of the scope (every GPU, every model).
        """
        _check(interval, scope)
        query = select(MetricRollupRow).where(
            MetricRollupRow.scope == scope,
            MetricRollupRow.interval == interval,
            MetricRollupRow.name.in_(list(names)),
            MetricRollupRow.at >= start,
            MetricRollupRow.at < end,
        )
        if subject is not None:
            query = query.where(MetricRollupRow.subject == subject)
        query = query.order_by(MetricRollupRow.at, MetricRollupRow.subject, MetricRollupRow.name)
        async with self.db.read() as s:
            return (await s.scalars(query)).all()

    async def delete_before(self, before: datetime, interval: str | None = None) -> int:
        """Retention: drop buckets older than ``before`` (of one interval, or all)."""
        _check(interval)
        stmt = delete(MetricRollupRow).where(MetricRollupRow.at < before)
        if interval is not None:
            stmt = stmt.where(MetricRollupRow.interval == interval)
        async with self.db.write() as s:
            done = await s.execute(stmt)
            return int(getattr(done, "rowcount", 0) or 0)
