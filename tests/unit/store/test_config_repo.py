"""SettingsRepo and AlertsRepo on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from modelfleet.errors import InvalidRequestError, NotFoundError
from modelfleet.store import Store
from modelfleet.store.config_repo import parse_condition


async def test_settings_put_get_all_and_overwrite(store: Store) -> None:
    assert await store.settings.get("log_level") is None
    assert await store.settings.get("log_level", "INFO") == "INFO"
    thresholds = {"gpu_utilization_high": 90, "response_time_high": 2.0, "note": "ünï ✓"}
    await store.settings.put_many(
        {"gpu_monitor_interval": 30, "alert_thresholds": thresholds, "flags": [True, None]}
    )
    await store.settings.put("gpu_monitor_interval", 60)
    assert await store.settings.all() == {
        "gpu_monitor_interval": 60, "alert_thresholds": thresholds, "flags": [True, None],
    }
    async with store.db.read() as s:
        count = (await s.execute(text("SELECT count(*) FROM settings_kv"))).scalar()
    assert count == 3  # overwritten, not duplicated
    assert await store.settings.delete("flags") is True
    assert await store.settings.delete("flags") is False
    await store.settings.put("cleared", None)
    assert await store.settings.get("cleared", "default") is None


def test_parse_condition_reads_seed_002_conditions() -> None:
    assert parse_condition("gpu_utilization > 90") == ("gpu_utilization", ">", 90.0)
    assert parse_condition("error_rate>=0.05") == ("error_rate", ">=", 0.05)
    for bad in ("gpu_utilization >", "drop table > 1", "x => 1"):
        with pytest.raises(InvalidRequestError):
            parse_condition(bad)


async def test_alert_rules_crud(store: Store) -> None:
    rule = await store.alerts.create_rule("高GPU使用率告警", "gpu_utilization", ">", 90)
    off = await store.alerts.create_rule("latency", "ttft_ms", ">=", 2000, enabled=False,
                                         severity="critical", window_s=300)
    assert rule.id.startswith("rule-") and rule.to_api()["condition"] == "gpu_utilization > 90"
    assert [r.id for r in await store.alerts.list_rules()] == [rule.id, off.id]
    assert [r.id for r in await store.alerts.list_rules(enabled_only=True)] == [rule.id]

    await store.alerts.update_rule(rule.id, {"threshold": 85.5, "enabled": False})
    again = await store.alerts.get_rule(rule.id)
    assert again.threshold == 85.5 and not again.enabled
    for bad in ({"op": "=>"}, {"severity": "meh"}, {"colour": "red"}):
        with pytest.raises(InvalidRequestError):
            await store.alerts.update_rule(rule.id, bad)
    with pytest.raises(InvalidRequestError):
        await store.alerts.create_rule("x", "m", "~", 1)
    with pytest.raises(NotFoundError):
        await store.alerts.get_rule("rule-nope")


async def test_alert_events_by_time_and_cascade(store: Store) -> None:
    rule = await store.alerts.create_rule("hot", "gpu_temperature", ">", 80)
    other = await store.alerts.create_rule("busy", "gpu_utilization", ">", 90)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    await store.alerts.add_event(rule.id, "firing", 85.0, "GPU hot", at=t0)
    await store.alerts.add_event(rule.id, "resolved", 70.0, at=t0 + timedelta(minutes=5))
    await store.alerts.add_event(other.id, "firing", 99.0, at=t0 + timedelta(minutes=1))

    events = await store.alerts.events()
    assert [(e.state, e.value) for e in events] == [
        ("resolved", 70.0), ("firing", 99.0), ("firing", 85.0),
    ]
    assert events[0].at == t0 + timedelta(minutes=5) and events[0].at.tzinfo is not None
    since = await store.alerts.events(since=t0 + timedelta(minutes=1))
    assert [e.value for e in since] == [70.0, 99.0]
    assert [e.value for e in await store.alerts.events(rule_id=rule.id, limit=1)] == [70.0]

    with pytest.raises(NotFoundError):
        await store.alerts.add_event("rule-nope", "firing", 1.0)
    with pytest.raises(InvalidRequestError):
        await store.alerts.add_event(rule.id, "exploded")
    await store.alerts.delete_rule(rule.id)
    assert [e.rule_id for e in await store.alerts.events()] == [other.id]
    with pytest.raises(NotFoundError):
        await store.alerts.delete_rule(rule.id)
