"""Notification channels: what a rule may list, and webhooks delivered to a real aiohttp
receiver on 127.0.0.1 (retries, failures noted on the event, never blocking)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from modelfleet.errors import InvalidRequestError
from modelfleet.observability.alerts import AlertEngine, Snapshot
from modelfleet.observability.notify import (
    EMAIL_WARNING,
    Notifier,
    parse_channels,
    redact_channels,
)
from modelfleet.settings import AlertThresholds, Settings
from modelfleet.store import Store
from tests.unit.store import conftest as store_fixtures

# The store's fixtures: every test that takes ``store`` runs on SQLite and PostgreSQL.
url, pg_database = store_fixtures.url, store_fixtures.pg_database
settings, store = store_fixtures.settings, store_fixtures.store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- channels ------------------------------------------------------------------------------


def test_parse_channels_normalises_every_form() -> None:
    channels, warnings = parse_channels(
        ["log", "email", "webhook",
         {"type": "webhook", "url": "https://b.example/h", "headers": {"X-Token": "t"}}],
        webhook_url="http://a.example:8080/hook")
    assert channels == [
        {"type": "log"},
        {"type": "email", "status": "unsupported"},
        {"type": "webhook", "url": "http://a.example:8080/hook", "headers": {}},
        {"type": "webhook", "url": "https://b.example/h", "headers": {"X-Token": "t"}},
    ]
    assert warnings == [EMAIL_WARNING]
    # a webhook_url alone adds its webhook
    assert parse_channels(["log"], "http://h/x")[0][1] == {
        "type": "webhook", "url": "http://h/x", "headers": {}}
    assert parse_channels([]) == ([], [])


@pytest.mark.parametrize(("raw", "webhook_url", "param", "words"), [
    ("log", None, "notification_channels", "must be a list"),
    (["sms"], None, "notification_channels[0]", "'sms' is not one of log, webhook, email"),
    ([{"kind": "log"}], None, "notification_channels[0]", "is not one of"),
    ([7], None, "notification_channels[0]", "7 is not one of"),
    (["log", "webhook"], None, "notification_channels[1]", "needs the rule's webhook_url"),
    ([{"type": "webhook"}], None, "notification_channels[0]", "webhook_url"),
    (["webhook"], "ftp://h/x", "notification_channels[0].url", "http:// or https://"),
    (["webhook"], "file:///etc/passwd", "notification_channels[0].url", "not 'file'"),
    (["webhook"], "http:///nohost", "notification_channels[0].url", "has no host"),
    (["webhook"], "http://h:99999/", "notification_channels[0].url", "is not a URL"),
    (["webhook"], "http://h/" + "x" * 3000, "notification_channels[0].url", "longer"),
    (["log"], "gopher://h/", "webhook_url", "http:// or https://"),
    ([{"type": "webhook", "url": "http://h/", "headers": {"A": "b\r\nEvil: 1"}}], None,
     "notification_channels[0].headers", "one-line"),
    ([{"type": "webhook", "url": "http://h/", "headers": ["A"]}], None,
     "notification_channels[0].headers", "must be an object"),
    (["log"] * 9, None, "notification_channels", "at most 8"),
])
def test_parse_channels_refuses_with_the_entry_named(
    raw: Any, webhook_url: str | None, param: str, words: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_channels(raw, webhook_url)
    assert caught.value.status == 422 and caught.value.param == param
    assert words in caught.value.message, caught.value.message


def test_redact_channels_hides_url_paths_and_header_values() -> None:
    shown = redact_channels([{"type": "webhook", "url": "https://u:pw@h.example:8443/T/secret?k=1",
                              "headers": {"Authorization": "Bearer x"}}, {"type": "log"}])
    assert shown == [{"type": "webhook", "url": "https://h.example:8443/…",
                      "headers": {"Authorization": "***"}}, {"type": "log"}]


# -- a receiver ----------------------------------------------------------------------------


class Receiver:
    """A local HTTP server; ``answer`` decides each response."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.answer: Handler = self.ok
        self.url = ""

    async def ok(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        if request.path == "/hook":
            self.got.append(await request.json())
            self.headers.append(dict(request.headers))
        return await self.answer(request)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", recv.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recv.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield recv
    finally:
        await runner.cleanup()


def fast_notifier() -> Notifier:
    return Notifier(backoff_s=(0.01, 0.02), timeout_s=5)


@pytest.fixture
async def engine(store: Store, settings: Settings) -> AsyncIterator[AlertEngine]:
    settings.alert_thresholds = AlertThresholds(error_rate_high=1.0)
    SNAPSHOT[None] = {}
    eng = AlertEngine(store, settings, lambda: SNAPSHOT, notifier=fast_notifier())
    try:
        yield eng
    finally:
        await eng.close()


SNAPSHOT: Snapshot = {None: {}}


async def fire(engine: AlertEngine, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    rule = await engine.create_rule({"name": "errors", "condition": "error_rate > 0.1",
                                     "notification_channels": ["webhook", "log"],
                                     "webhook_url": receiver.url, **extra})
    SNAPSHOT[None] = {"error_rate": 0.5}
    await engine.evaluate_once(T0)
    return rule


async def test_webhook_receives_the_firing_and_the_resolved_post(
    engine: AlertEngine, receiver: Receiver
) -> None:
    rule = await fire(engine, receiver, notification_channels=[
        {"type": "webhook", "url": receiver.url, "headers": {"X-Token": "s3cret"}}])
    SNAPSHOT[None] = {"error_rate": 0.0}
    await engine.evaluate_once(T0)
    await engine.notifier.idle()
    assert [g["state"] for g in receiver.got] == ["firing", "resolved"]
    firing = receiver.got[0]
    assert set(firing) == {"alert", "state", "rule", "timestamp"}
    assert firing["rule"] == {"id": rule["id"], "name": "errors", "condition": "error_rate > 0.1",
                              "severity": "warning", "builtin": False}
    assert firing["alert"]["value"] == 0.5 and firing["alert"]["threshold"] == 0.1
    assert firing["timestamp"] == "2026-01-01T00:00:00Z"
    assert receiver.got[1]["alert"]["alert_id"] == firing["alert"]["alert_id"]
    assert receiver.headers[0]["X-Token"] == "s3cret"
    assert "s3cret" not in str(firing)  # the rule sent along carries no channel secrets


async def test_webhook_is_tried_three_times_through_5xx(
    engine: AlertEngine, receiver: Receiver, store: Store
) -> None:
    statuses = [500, 500, 200]

    async def flaky(request: web.Request) -> web.StreamResponse:
        return web.Response(status=statuses.pop(0))

    receiver.answer = flaky
    await fire(engine, receiver)
    await engine.notifier.idle()
    assert len(receiver.got) == 3 and statuses == []
    (event,) = await store.alerts.events()
    assert "failed" not in event.message  # delivered in the end


async def test_webhook_that_keeps_failing_is_noted_on_the_event(
    engine: AlertEngine, receiver: Receiver, store: Store
) -> None:
    async def down(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503)

    receiver.answer = down
    await fire(engine, receiver)
    await engine.notifier.idle()
    assert len(receiver.got) == 3
    (event,) = await store.alerts.events()
    assert event.message.endswith("webhook 127.0.0.1:"
                                  f"{receiver.url.split(':')[2].split('/')[0]} failed after 3 "
                                  "tries: HTTP 503")


async def test_webhook_refused_with_4xx_is_not_retried(
    receiver: Receiver,
) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.Response(status=400)

    receiver.answer = refuse
    notifier = fast_notifier()
    try:
        assert await notifier.post(receiver.url, {}, {"x": 1}) == "HTTP 400"
    finally:
        await notifier.close()
    assert len(receiver.got) == 1


async def test_webhook_redirects_are_not_followed(receiver: Receiver) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/elsewhere")

    receiver.answer = moved
    notifier = fast_notifier()
    try:
        assert await notifier.post(receiver.url, {}, {"x": 1}) == "HTTP 302"
    finally:
        await notifier.close()
    assert receiver.paths == ["/hook"]


async def test_webhook_reads_at_most_a_capped_answer(receiver: Receiver) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        try:
            for _ in range(1000):  # up to 64 MiB, never all read
                await resp.write(b"x" * 65536)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    receiver.answer = huge
    notifier = fast_notifier()
    try:
        started = time.monotonic()
        assert await notifier.post(receiver.url, {}, {"x": 1}) is None
        assert time.monotonic() - started < 2
    finally:
        await notifier.close()


async def test_hanging_receiver_does_not_delay_evaluation(
    engine: AlertEngine, receiver: Receiver
) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=200)

    receiver.answer = hang
    await engine.create_rule({"name": "errors", "condition": "error_rate > 0.1",
                              "notification_channels": ["webhook"],
                              "webhook_url": receiver.url})
    SNAPSHOT[None] = {"error_rate": 0.0}
    await engine.evaluate_once(T0)  # a round without events: the baseline
    started = time.monotonic()
    await engine.evaluate_once(T0)
    baseline = time.monotonic() - started

    SNAPSHOT[None] = {"error_rate": 0.5}
    started = time.monotonic()
    await engine.evaluate_once(T0)  # fires: stores the event, hands the POST off
    firing = time.monotonic() - started
    await asyncio.sleep(0.05)
    assert receiver.got, "the POST went out"
    assert firing < baseline + 0.1, (firing, baseline)  # the 5 s timeout is not waited for
    started = time.monotonic()
    await engine.close()  # cancels the delivery still waiting
    assert time.monotonic() - started < 1
    release.set()
