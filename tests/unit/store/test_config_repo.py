"""SettingsRepo and AlertsRepo on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from modelfleet.errors import InvalidRequestError, NotFoundError
from modelfleet.store import Store


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


async def test_alert_rules_crud(store: Store) -> None:
    rule = await store.alerts.create_rule("高GPU使用率告警", "gpu_utilization", ">", 90)
    off = await store.alerts.create_rule(
        "slow qwen", "ttft_p95", ">=", 2.0, condition='ttft_p95{model="qwen"} >= 2s for 1m',
        model="qwen", for_s=60, enabled=False, severity="critical",
        channels=[{"type": "webhook", "url": "http://h/x", "headers": {"A": "b"}}])
    assert rule.id.startswith("rule-") and rule.to_api()["condition"] == "gpu_utilization > 90"
    assert rule.channels == [{"type": "log"}] and rule.model is None and not rule.builtin
    assert [r.id for r in await store.alerts.list_rules()] == [rule.id, off.id]
    assert [r.id for r in await store.alerts.list_rules(enabled_only=True)] == [rule.id]
    stored = await store.alerts.get_rule(off.id)
    assert (stored.model, stored.for_s, stored.condition) == (
        "qwen", 60.0, 'ttft_p95{model="qwen"} >= 2s for 1m')
    assert stored.channels[0]["headers"] == {"A": "b"}

    await store.alerts.update_rule(rule.id, {"threshold": 85.5, "enabled": False,
                                             "channels": [{"type": "log"}, {"type": "email"}]})
    again = await store.alerts.get_rule(rule.id)
    assert again.threshold == 85.5 and not again.enabled and len(again.channels) == 2
    for bad in ({"op": "=>"}, {"severity": "meh"}, {"colour": "red"}, {"for_s": -1},
                {"window_s": 5}):
        with pytest.raises(InvalidRequestError):
            await store.alerts.update_rule(rule.id, bad)
    with pytest.raises(InvalidRequestError):
        await store.alerts.create_rule("x", "m", "~", 1)
    with pytest.raises(NotFoundError):
        await store.alerts.get_rule("rule-nope")


async def test_builtin_rules_are_upserted_and_filtered(store: Store) -> None:
    mine = await store.alerts.create_rule("mine", "error_rate", ">", 0.5)
    for threshold in (90.0, 80.0):  # the second call updates the same row
        await store.alerts.upsert_builtin(
            "builtin-gpu_utilization_high", name="gpu_utilization_high",
            metric="gpu_utilization", op=">", threshold=threshold,
            condition=f"gpu_utilization > {threshold:g}", severity="warning",
            channels=[{"type": "log"}])
    builtin = await store.alerts.get_rule("builtin-gpu_utilization_high")
    assert builtin.builtin and builtin.threshold == 80.0
    assert builtin.condition == "gpu_utilization > 80"
    assert [r.id for r in await store.alerts.list_rules(builtin=False)] == [mine.id]
    assert [r.id for r in await store.alerts.list_rules(builtin=True)] == [builtin.id]
    await store.alerts.add_event(builtin.id, "firing", 95.0)  # events may belong to it


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


async def test_latest_event_of_each_rule_and_scope(store: Store) -> None:
    """What the alert engine re-derives its firing alerts from after a restart."""
    rule = await store.alerts.create_rule("errors", "error_rate", ">", 0.1)
    other = await store.alerts.create_rule("slow", "latency_p95", ">", 2)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    fired = await store.alerts.add_event(rule.id, "firing", 0.5, at=t0, model="a",
                                         event_id="alert-a1", alert_id="alert-a1")
    assert (fired.id, fired.alert_id, fired.model) == ("alert-a1", "alert-a1", "a")
    await store.alerts.add_event(rule.id, "resolved", 0.0, at=t0 + timedelta(seconds=5),
                                 model="a", alert_id="alert-a1")
    await store.alerts.add_event(rule.id, "firing", 0.7, at=t0 + timedelta(seconds=1),
                                 model="b", event_id="alert-b1", alert_id="alert-b1")
    await store.alerts.add_event(rule.id, "firing", 0.9, at=t0 + timedelta(seconds=2))
    await store.alerts.add_event(other.id, "firing", 3.0, at=t0, event_id="alert-o1")
    await store.alerts.add_event(other.id, "resolved", 1.0, at=t0)  # a tie: resolved wins

    latest = await store.alerts.latest_events()
    assert sorted((e.rule_id == rule.id, e.model or "", e.state, e.value) for e in latest) == [
        (False, "", "resolved", 1.0),
        (True, "", "firing", 0.9),
        (True, "a", "resolved", 0.0),
        (True, "b", "firing", 0.7),
    ]
    resolved = next(e for e in latest if e.model == "a")
    assert resolved.to_api()["alert_id"] == "alert-a1" and resolved.id != "alert-a1"


async def test_note_on_event_appends_to_its_message(store: Store) -> None:
    rule = await store.alerts.create_rule("errors", "error_rate", ">", 0.1)
    event = await store.alerts.add_event(rule.id, "firing", 0.5, "errors: 0.5")
    await store.alerts.note_on_event(event.id, "webhook h failed")
    await store.alerts.note_on_event("alert-gone", "ignored")  # no such event: no error
    (again,) = await store.alerts.events()
    assert again.message == "errors: 0.5; webhook h failed"
