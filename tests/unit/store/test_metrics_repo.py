"""RequestLogRepo and RollupsRepo on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from modelfleet.errors import InvalidRequestError
from modelfleet.store import Store
from modelfleet.store.metrics_repo import RequestRecord, RollupRecord

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _request(minute: int, model: str = "m", **kw: object) -> RequestRecord:
    record: RequestRecord = {"at": T0 + timedelta(minutes=minute), "model": model, "status": 200}
    record.update(kw)  # type: ignore[typeddict-item]
    return record


async def test_request_log_add_many_and_query_by_model_and_range(store: Store) -> None:
    added = await store.requests.add_many([
        _request(0, prompt_tokens=5, completion_tokens=10, ttft_ms=12.5, e2e_ms=80.0,
                 instance="127.0.0.1:9001", key_id="key-1"),
        _request(1, model="other", status=503, error_code="QUEUE_FULL"),
        _request(2),
        _request(3),
    ])
    assert added == 4 and await store.requests.add_many([]) == 0

    rows = await store.requests.query("m")
    assert [r.at for r in rows] == [T0, T0 + timedelta(minutes=2), T0 + timedelta(minutes=3)]
    first = rows[0]
    assert (first.prompt_tokens, first.completion_tokens, first.ttft_ms, first.e2e_ms) == (
        5, 10, 12.5, 80.0)
    assert first.instance == "127.0.0.1:9001" and first.key_id == "key-1"
    assert rows[1].prompt_tokens == 0 and rows[1].queue_ms is None

    window = await store.requests.query(since=T0 + timedelta(minutes=1),
                                        until=T0 + timedelta(minutes=3))
    assert [(r.model, r.status, r.error_code) for r in window] == [
        ("other", 503, "QUEUE_FULL"), ("m", 200, None)]
    assert len(await store.requests.query(limit=2)) == 2

    assert await store.requests.delete_before(T0 + timedelta(minutes=2)) == 2
    assert len(await store.requests.query()) == 2


def _rollup(minute: int, name: str, value: float, subject: str = "0",
            interval: str = "1m", scope: str = "gpu") -> RollupRecord:
    return {"at": T0 + timedelta(minutes=minute), "interval": interval, "scope": scope,
            "subject": subject, "name": name, "value": value}


async def test_rollups_upsert_updates_the_same_bucket(store: Store) -> None:
    await store.rollups.upsert_many([_rollup(0, "utilization", 10.0)])
    # The same bucket again (also twice within one batch): updated, never duplicated.
    written = await store.rollups.upsert_many([
        _rollup(0, "utilization", 20.0), _rollup(0, "utilization", 30.0),
        _rollup(0, "utilization", 40.0, interval="5m"),
    ])
    assert written == 2
    async with store.db.read() as s:
        count = (await s.execute(text("SELECT count(*) FROM metric_rollups"))).scalar()
    assert count == 2
    rows = await store.rollups.query("gpu", ["utilization"], T0, T0 + timedelta(hours=1), "1m")
    assert [(r.at, r.value) for r in rows] == [(T0, 30.0)]


async def test_rollups_query_by_range_subject_and_names(store: Store) -> None:
    await store.rollups.upsert_many(
        [_rollup(m, "utilization", float(m), subject=s) for m in range(5) for s in ("0", "1")]
        + [_rollup(m, "memory_used", 100.0 + m) for m in range(5)]
        + [_rollup(0, "cpu_percent", 50.0, subject="", scope="system")]
    )
    start, end = T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)
    one = await store.rollups.query("gpu", ["utilization"], start, end, "1m", subject="1")
    assert [(r.at, r.subject, r.value) for r in one] == [
        (T0 + timedelta(minutes=1), "1", 1.0), (T0 + timedelta(minutes=2), "1", 2.0)]
    every = await store.rollups.query("gpu", ["utilization", "memory_used"], start, end, "1m")
    assert [(r.subject, r.name) for r in every] == [
        ("0", "memory_used"), ("0", "utilization"), ("1", "utilization")] * 2
    system = await store.rollups.query("system", ["cpu_percent"], T0, end, "1m")
    assert [r.value for r in system] == [50.0]
    assert await store.rollups.query("gpu", ["utilization"], start, end, "1h") == []

    with pytest.raises(InvalidRequestError):
        await store.rollups.query("gpu", ["x"], start, end, "7m")
    with pytest.raises(InvalidRequestError):
        await store.rollups.upsert_many([_rollup(0, "x", 1.0, scope="planet")])
    assert await store.rollups.delete_before(T0 + timedelta(minutes=1), interval="1m") == 4
