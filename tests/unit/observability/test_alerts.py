"""The alert engine on a real store (SQLite and PostgreSQL): pending, firing and resolved
with an injected clock, model scopes, built-in thresholds read live, no data, the
events it records, restarts, and the rules API it serves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelfleet.errors import ConflictError, InvalidRequestError, NotFoundError
from modelfleet.observability.alerts import AlertEngine, Snapshot
from modelfleet.settings import AlertThresholds, Settings
from modelfleet.store import Store
from tests.unit.store import conftest as store_fixtures

# The store's fixtures: every test that takes ``store`` runs on SQLite and PostgreSQL.
url, pg_database = store_fixtures.url, store_fixtures.pg_database
settings, store = store_fixtures.settings, store_fixtures.store

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
QUIET: Snapshot = {None: {"gpu_utilization": 10.0, "gpu_temperature": 40.0,
                          "latency_p95": 0.1, "error_rate": 0.0}}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Metrics:
    """A snapshot the test sets; the engine reads it through ``__call__``."""

    def __init__(self) -> None:
        self.now: Snapshot = {k: dict(v) for k, v in QUIET.items()}

    def set(self, model: str | None = None, **figures: float) -> None:
        self.now.setdefault(model, {}).update(figures)

    def drop(self, model: str | None, name: str) -> None:
        self.now.get(model, {}).pop(name, None)

    def __call__(self) -> Snapshot:
        return self.now


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def engine(store: Store, settings: Settings,
                 metrics: Metrics) -> AsyncIterator[AlertEngine]:
    # The built-in error_rate_high (0.05) would fire beside the rules under test.
    settings.alert_thresholds = AlertThresholds(error_rate_high=1.0)
    eng = AlertEngine(store, settings, metrics)
    try:
        yield eng
    finally:
        await eng.close()


def collect(engine: AlertEngine) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    engine.subscribe(seen.append)
    return seen


async def history(store: Store) -> list[tuple[str, str | None, float | None]]:
    """(state, model, value) of every stored event, oldest first."""
    return [(e.state, e.model, e.value) for e in reversed(await store.alerts.events())]


async def test_rule_fires_only_after_holding_for_its_duration_and_resolves(
    engine: AlertEngine, metrics: Metrics, store: Store
) -> None:
    seen = collect(engine)
    rule = await engine.create_rule({"name": "errors", "condition": "error_rate > 0.1 for 2s"})
    await engine.evaluate_once(at(0))
    assert (await engine.rule(rule["id"]))["status"]["state"] == "ok"

    metrics.set(error_rate=0.5)
    await engine.evaluate_once(at(10))
    await engine.evaluate_once(at(11.9))
    status = (await engine.rule(rule["id"]))["status"]
    assert status["state"] == "pending" and status["since"] == "2026-01-01T12:00:10Z"
    assert seen == [] and await history(store) == [] and engine.active() == []

    await engine.evaluate_once(at(12))  # held for 2 s
    assert await history(store) == [("firing", None, 0.5)]
    (event,) = seen
    assert event["type"] == "system_alert"
    data = event["data"]
    assert {k: data[k] for k in ("rule_id", "name", "severity", "state", "value",
                                 "threshold", "model", "timestamp")} == {
        "rule_id": rule["id"], "name": "errors", "severity": "warning", "state": "firing",
        "value": 0.5, "threshold": 0.1, "model": None, "timestamp": "2026-01-01T12:00:12Z"}
    assert data["message"] == "errors: error_rate = 0.5 (> 0.1 for 2s)"
    assert [a["alert_id"] for a in engine.active()] == [data["alert_id"]]
    assert (await engine.rule(rule["id"]))["status"]["state"] == "firing"

    metrics.set(error_rate=0.6)
    await engine.evaluate_once(at(13))  # still firing: no second event
    assert len(seen) == 1 and len(await history(store)) == 1
    assert engine.active()[0]["value"] == 0.6

    metrics.set(error_rate=0.01)
    await engine.evaluate_once(at(14))
    assert await history(store) == [("firing", None, 0.5), ("resolved", None, 0.01)]
    resolved = seen[1]["data"]
    assert resolved["state"] == "resolved" and resolved["alert_id"] == data["alert_id"]
    assert "resolved" in resolved["message"] and engine.active() == []
    events = await store.alerts.events()
    assert {e.to_api()["alert_id"] for e in events} == {data["alert_id"]}
    await engine.evaluate_once(at(15))
    assert len(seen) == 2


async def test_pending_resets_when_the_condition_stops_holding(
    engine: AlertEngine, metrics: Metrics, store: Store
) -> None:
    await engine.create_rule({"name": "errors", "condition": "error_rate > 0.1 for 2s"})
    metrics.set(error_rate=0.5)
    await engine.evaluate_once(at(0))
    metrics.set(error_rate=0.0)
    await engine.evaluate_once(at(1))  # back to ok
    metrics.set(error_rate=0.5)
    await engine.evaluate_once(at(1.5))  # pending again, from 1.5
    await engine.evaluate_once(at(3))
    assert await history(store) == []
    await engine.evaluate_once(at(3.5))
    assert await history(store) == [("firing", None, 0.5)]


async def test_model_scoped_rule_reads_only_that_model(
    engine: AlertEngine, metrics: Metrics, store: Store
) -> None:
    seen = collect(engine)
    await engine.create_rule({"name": "qwen slow", "severity": "critical",
                              "condition": 'ttft_p95{model="qwen"} > 2'})
    metrics.set(None, ttft_p95=9.0)  # the host-wide figure is not the model's
    metrics.set("llama", ttft_p95=9.0)
    metrics.set("qwen", ttft_p95=1.0)
    await engine.evaluate_once(at(0))
    assert seen == []
    metrics.set("qwen", ttft_p95=2.5)
    await engine.evaluate_once(at(1))
    assert await history(store) == [("firing", "qwen", 2.5)]
    assert seen[0]["data"]["model"] == "qwen" and seen[0]["data"]["severity"] == "critical"
    assert 'ttft_p95{model="qwen"} = 2.5' in seen[0]["data"]["message"]


async def test_builtin_rules_follow_alert_thresholds_live(
    engine: AlertEngine, metrics: Metrics, store: Store, settings: Settings
) -> None:
    seen = collect(engine)
    metrics.set(gpu_utilization=85.0)
    await engine.evaluate_once(at(0))
    assert seen == []

    # what PUT /api/config does: the settings object gets new thresholds
    settings.alert_thresholds = AlertThresholds(gpu_utilization_high=80)
    await engine.evaluate_once(at(1))
    (event,) = seen
    assert event["data"]["rule_id"] == "builtin-gpu_utilization_high"
    assert event["data"]["threshold"] == 80 and event["data"]["name"] == "gpu_utilization_high"
    (row,) = await store.alerts.list_rules(builtin=True)  # the events' rule, up to date
    assert row.id == "builtin-gpu_utilization_high" and row.threshold == 80
    listed = {r["id"]: r for r in await engine.rules()}
    builtin = listed["builtin-gpu_utilization_high"]
    assert builtin["builtin"] and builtin["threshold"] == 80
    assert builtin["condition"] == "gpu_utilization > 80"
    assert builtin["setting"] == "alert_thresholds.gpu_utilization_high"
    assert builtin["notification_channels"] == ["log"]
    assert builtin["status"]["state"] == "firing"
    assert set(listed) == {"builtin-gpu_utilization_high", "builtin-gpu_temperature_high",
                           "builtin-response_time_high", "builtin-error_rate_high"}
    assert listed["builtin-response_time_high"]["metric"] == "latency_p95"

    settings.alert_thresholds = AlertThresholds(gpu_utilization_high=90)
    await engine.evaluate_once(at(2))
    assert [e["data"]["state"] for e in seen] == ["firing", "resolved"]
    assert await history(store) == [("firing", None, 85.0), ("resolved", None, 85.0)]


async def test_missing_metric_is_no_data_neither_firing_nor_resolving(
    engine: AlertEngine, metrics: Metrics, store: Store
) -> None:
    seen = collect(engine)
    rule = await engine.create_rule({"name": "slow", "condition": "latency_p99 > 1"})
    await engine.evaluate_once(at(0))
    status = (await engine.rule(rule["id"]))["status"]
    assert status["state"] == "no_data" and status["no_data"] and seen == []

    metrics.set(latency_p99=3.0)
    await engine.evaluate_once(at(1))
    assert len(seen) == 1
    metrics.drop(None, "latency_p99")
    await engine.evaluate_once(at(2))  # no data: stays firing, nothing resolved
    status = (await engine.rule(rule["id"]))["status"]
    assert status["state"] == "firing" and status["no_data"]
    assert len(engine.active()) == 1 and len(seen) == 1
    metrics.set(latency_p99=0.5)
    await engine.evaluate_once(at(3))
    assert [e["data"]["state"] for e in seen] == ["firing", "resolved"]
    assert await history(store) == [("firing", None, 3.0), ("resolved", None, 0.5)]


async def test_firing_alerts_are_re_derived_after_a_restart(
    store: Store, settings: Settings, metrics: Metrics
) -> None:
    settings.alert_thresholds = AlertThresholds(error_rate_high=1.0)
    first = AlertEngine(store, settings, metrics)
    rule = await first.create_rule({"name": "errors", "condition": "error_rate > 0.1"})
    scoped = await first.create_rule({"name": "qwen errors",
                                      "condition": 'error_rate{model="qwen"} > 0.1'})
    metrics.set(error_rate=0.5)
    metrics.set("qwen", error_rate=0.5)
    await first.evaluate_once(at(0))
    fired = {a["rule_id"]: a["alert_id"] for a in first.active()}
    assert set(fired) == {rule["id"], scoped["id"]}
    await first.close()

    # still holding for qwen, no longer for the host
    metrics.set(error_rate=0.0)
    second = AlertEngine(store, settings, metrics)
    seen = collect(second)
    try:
        await second.evaluate_once(at(60))
        assert [(e["data"]["state"], e["data"]["alert_id"]) for e in seen] == [
            ("resolved", fired[rule["id"]])]
        assert [(a["rule_id"], a["alert_id"], a["timestamp"]) for a in second.active()] == [
            (scoped["id"], fired[scoped["id"]], "2026-01-01T12:00:00Z")]
        await second.evaluate_once(at(61))
        assert len(seen) == 1  # resolved once
        events = await history(store)
        assert events[2] == ("resolved", None, 0.0)
        assert set(events[:2]) == {("firing", None, 0.5), ("firing", "qwen", 0.5)}
    finally:
        await second.close()

    third = AlertEngine(store, settings, metrics)  # and once more: nothing left to resolve
    seen = collect(third)
    try:
        await third.evaluate_once(at(120))
        assert seen == [] and [a["rule_id"] for a in third.active()] == [scoped["id"]]
    finally:
        await third.close()


async def test_deleted_or_disabled_rule_resolves_its_alert(
    engine: AlertEngine, metrics: Metrics, store: Store
) -> None:
    seen = collect(engine)
    gone = await engine.create_rule({"name": "gone", "condition": "error_rate > 0.1"})
    off = await engine.create_rule({"name": "off", "condition": "error_rate >= 0.2"})
    metrics.set(error_rate=0.5)
    await engine.evaluate_once(at(0))
    assert len(engine.active()) == 2

    await engine.delete_rule(gone["id"])  # at once, not stored: its events went with it
    assert [a["rule_id"] for a in engine.active()] == [off["id"]]
    assert seen[-1]["data"]["state"] == "resolved" and "deleted" in seen[-1]["data"]["message"]
    await engine.update_rule(off["id"], {"enabled": False})
    assert (await engine.rule(off["id"]))["status"]["state"] == "disabled"
    await engine.evaluate_once(at(1))
    assert engine.active() == []
    assert await history(store) == [("firing", None, 0.5), ("resolved", None, 0.5)]
    assert "disabled or changed" in (await store.alerts.events())[0].message


async def test_snapshot_failures_skip_a_round_and_async_sources_work(
    store: Store, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def source() -> Snapshot:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("device read failed")
        return {None: {"error_rate": 0.9}}

    engine = AlertEngine(store, settings, source)
    try:
        with caplog.at_level(logging.ERROR, "modelfleet.alerts"):
            await engine.evaluate_once(at(0))
        assert "skipping this evaluation" in caplog.text and engine.active() == []
        await engine.evaluate_once(at(1))
        assert [a["name"] for a in engine.active()] == ["error_rate_high"]
    finally:
        await engine.close()


async def test_subscribers_may_fail_or_be_coroutines(
    engine: AlertEngine, metrics: Metrics
) -> None:
    got: list[str] = []

    def broken(message: dict[str, Any]) -> None:
        raise RuntimeError("subscriber bug")

    async def later(message: dict[str, Any]) -> None:
        got.append(message["data"]["state"])

    engine.subscribe(broken)
    unsubscribe = engine.subscribe(later)
    await engine.create_rule({"name": "errors", "condition": "error_rate > 0.1"})
    metrics.set(error_rate=0.9)
    await engine.evaluate_once(at(0))
    await asyncio.sleep(0)  # the coroutine runs as a task of its own
    assert got == ["firing"]
    unsubscribe()
    unsubscribe()  # twice is harmless


async def test_log_channel_logs_warning_when_firing_and_info_when_resolved(
    engine: AlertEngine, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    await engine.create_rule({"name": "errors", "condition": "error_rate > 0.1",
                              "notification_channels": ["log"]})
    with caplog.at_level(logging.INFO, "modelfleet.alerts"):
        metrics.set(error_rate=0.5)
        await engine.evaluate_once(at(0))
        metrics.set(error_rate=0.0)
        await engine.evaluate_once(at(1))
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name == "modelfleet.alerts" and "errors:" in r.getMessage()]
    assert lines == [("WARNING", "alert firing: errors: error_rate = 0.5 (> 0.1)"),
                     ("INFO", "alert resolved: errors: resolved, error_rate = 0 (not > 0.1)")]


async def test_rules_api_create_update_and_refusals(
    engine: AlertEngine, store: Store
) -> None:
    rule = await engine.create_rule({
        "name": "高GPU使用率告警", "condition": "gpu_utilization > 90", "severity": "warning",
        "enabled": True, "notification_channels": ["email", "webhook"],
        "webhook_url": "https://hooks.example/T0/secret"})
    assert rule["notification_channels"] == ["email", "webhook"]
    assert rule["channels"][0] == {"type": "email", "status": "unsupported"}
    assert rule["warnings"] and "no mail server" in rule["warnings"][0]
    assert rule["channels"][1]["url"] == "https://hooks.example/T0/secret"
    assert rule["builtin"] is False and rule["status"]["state"] == "not_evaluated"

    shown = await engine.rule(rule["id"])  # not an admin: the URL's secret part is hidden
    assert shown["channels"][1]["url"] == "https://hooks.example/…"
    assert (await engine.rule(rule["id"], reveal=True))["channels"][1]["url"].endswith("secret")

    updated = await engine.update_rule(rule["id"], {"condition": "gpu_utilization > 95 for 1m",
                                                    "webhook_url": "http://other/x"})
    assert (updated["threshold"], updated["for_s"]) == (95, 60)
    assert updated["channels"] == [{"type": "email", "status": "unsupported"},
                                   {"type": "webhook", "url": "http://other/x", "headers": {}}]

    for bad, param in [({"condition": "gpu_utilisation > 1"}, "condition"),
                       ({"severity": "loud"}, "severity"),
                       ({"notification_channels": ["pager"]}, "notification_channels[0]"),
                       ({"notification_channels": ["webhook"]}, "notification_channels[0]"),
                       ({"notification_channels": [{"type": "webhook", "url": "file:///x"}]},
                        "notification_channels[0].url")]:
        with pytest.raises(InvalidRequestError) as caught:
            await engine.update_rule(rule["id"], bad)
        assert caught.value.status == 422 and caught.value.param == param, caught.value
    with pytest.raises(ConflictError, match="PUT /api/config"):
        await engine.update_rule("builtin-error_rate_high", {"enabled": False})
    with pytest.raises(ConflictError):
        await engine.delete_rule("builtin-error_rate_high")
    assert (await engine.rule("builtin-error_rate_high"))["builtin"]
    with pytest.raises(NotFoundError):
        await engine.rule("rule-nope")
    await engine.delete_rule(rule["id"])
    with pytest.raises(NotFoundError):
        await engine.delete_rule(rule["id"])


async def test_overview_lists_active_and_history_newest_first(
    engine: AlertEngine, metrics: Metrics
) -> None:
    await engine.create_rule({"name": "errors", "condition": "error_rate > 0.1",
                              "severity": "critical"})
    metrics.set(error_rate=0.5, gpu_temperature=95.0)
    await engine.evaluate_once(at(0))
    metrics.set(error_rate=0.0)
    await engine.evaluate_once(at(1))
    view = await engine.overview(limit=10)
    assert [a["name"] for a in view["active"]] == ["gpu_temperature_high"]
    assert [(h["name"], h["state"]) for h in view["history"]][:1] == [("errors", "resolved")]
    assert sorted((h["name"], h["state"], h["severity"]) for h in view["history"]) == [
        ("errors", "firing", "critical"), ("errors", "resolved", "critical"),
        ("gpu_temperature_high", "firing", "warning")]
    assert len((await engine.overview(limit=1))["history"]) == 1
