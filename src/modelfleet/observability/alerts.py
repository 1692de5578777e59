"""The alert engine: evaluates every rule against a snapshot of the metrics on a timer,
keeps each alert's state, records its events and sends its notifications.

    engine = AlertEngine(store, settings, snapshot, interval_s=15)
    engine.subscribe(callback)     # {"type": "system_alert", "data": {...}} per event
    engine.start()                 # evaluate_once() every interval_s
    engine.active()                # the alerts firing now
    await engine.close()

A snapshot maps ``None`` to the host's metrics and a model's name to that model's
(``{None: {"gpu_utilization": 93.0}, "qwen": {"error_rate": 0.2}}``). A rule reads its
metric in its scope (``{model="qwen"}``, else the host); a metric missing there means
"no data": the alert neither fires nor resolves, and the rule's status says so.

Each (rule, scope) is a small state machine, owned by ``_step``::

    ok ──holds──▶ pending ──held for_s──▶ firing ──stops holding──▶ ok
     ▲              │                       (event "firing":        (event "resolved":
     └─stops holding┘                        stored, notified)       stored, notified)

A rule that is deleted, disabled or re-scoped while firing resolves at the next
evaluation (at once when deleted). Firing alerts live in memory and are re-derived
from the newest stored events at the first evaluation, so an alert that was firing
before a restart and no longer holds after it resolves, once.

The rules API (``/api/config/alerts``) goes through the engine too: it is what knows
each rule's live status and the built-in rules, which follow ``alert_thresholds``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from modelfleet.errors import NotFoundError
from modelfleet.observability import alert_catalog as catalog
from modelfleet.observability.alert_catalog import Rule, builtin_rules
from modelfleet.observability.notify import Notifier
from modelfleet.settings import Settings
from modelfleet.store import Store
from modelfleet.store.convert import iso_z
from modelfleet.store.tables import new_id, utcnow

log = logging.getLogger("modelfleet.alerts")

Snapshot = dict[str | None, dict[str, float]]
SnapshotSource = Callable[[], Awaitable[Snapshot]] | Callable[[], Snapshot]
Subscriber = Callable[[dict[str, Any]], Any]
Key = tuple[str, str | None]  # (rule id, model scope)


class AlertState(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"


@dataclass
class _Track:
    """One rule on one scope."""

    rule: Rule
    state: AlertState = AlertState.OK
    since: datetime | None = None  # when it began to hold (pending) or fired (firing)
    value: float | None = None
    alert_id: str | None = None
    message: str = ""
    no_data: bool = False
    checked_at: datetime | None = None


def _scope(rule: Rule) -> str:
    cond = rule.condition
    return f'{cond.metric}{{model="{cond.model}"}}' if cond.model else cond.metric


def _message(rule: Rule, value: float, firing: bool) -> str:
    cond = rule.condition
    held = f" for {cond.for_s:g}s" if cond.for_s else ""
    if firing:
        return f"{rule.name}: {_scope(rule)} = {value:g} ({cond.op} {cond.threshold:g}{held})"
    return (f"{rule.name}: resolved, {_scope(rule)} = {value:g} "
            f"(not {cond.op} {cond.threshold:g})")


class AlertEngine:
    def __init__(self, store: Store, settings: Settings, snapshot: SnapshotSource, *,
                 interval_s: float = 15, notifier: Notifier | None = None) -> None:
        self.store = store
        self.settings = settings
        self.snapshot = snapshot
        self.interval_s = interval_s
        self.notifier = notifier or Notifier()
        if self.notifier.on_failure is None:
            self.notifier.on_failure = self.store.alerts.note_on_event
        self._tracks: dict[Key, _Track] = {}
        self._subscribers: list[Subscriber] = []
        self._restored = False
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._callbacks: set[asyncio.Future[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Evaluate every ``interval_s`` seconds until ``close``; the first round now."""
        if self._timer is None:
            self._timer = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.evaluate_once()
            except Exception:  # the next round may well work (a database blip)
                log.exception("alert evaluation failed")
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None
        for fut in list(self._callbacks):
            fut.cancel()
        await asyncio.gather(*self._callbacks, return_exceptions=True)
        await self.notifier.close()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(message)`` for each event (a coroutine function is run as a
        task); returns the function that unsubscribes it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    # -- evaluation ----------------------------------------------------------------------

    async def evaluate_once(self, now: datetime | None = None) -> None:
        """One round: read the snapshot, step every enabled rule, retire the tracks of
        rules that are gone. Returns once events are stored; notifications go on in
        the background. A snapshot that cannot be read skips the round."""
        now = now or utcnow()
        async with self._lock:
            if not self._restored:
                await self._restore()
            try:
                got = self.snapshot()
                snapshot: Snapshot = await got if inspect.isawaitable(got) else got
            except Exception:
                log.exception("alert snapshot failed; skipping this evaluation")
                return
            rules = await self._enabled_rules()
            live: set[Key] = set()
            for rule in rules:
                key = (rule.id, rule.condition.model)
                live.add(key)
                track = self._tracks.setdefault(key, _Track(rule))
                track.rule = rule
                value = (snapshot.get(rule.condition.model) or {}).get(rule.condition.metric)
                await self._step(track, None if value is None else float(value), now)
            for key in [k for k in self._tracks if k not in live]:
                await self._retire(self._tracks.pop(key), now, "its rule was disabled or changed")

    async def _step(self, track: _Track, value: float | None, now: datetime) -> None:
        """The transitions of one (rule, scope); see the module docstring."""
        track.checked_at = now
        track.no_data = value is None
        if value is None:
            return
        track.value = value
        cond = track.rule.condition
        if cond.holds(value):
            if track.state is AlertState.OK:
                track.state, track.since = AlertState.PENDING, now
            held_s = (now - track.since).total_seconds() if track.since else 0.0
            if track.state is AlertState.PENDING and held_s >= cond.for_s:
                await self._fire(track, value, now)
        elif track.state is AlertState.PENDING:
            track.state, track.since = AlertState.OK, None
        elif track.state is AlertState.FIRING:
            await self._resolve(track, value, now, _message(track.rule, value, False))

    async def _fire(self, track: _Track, value: float, now: datetime) -> None:
        rule = track.rule
        event_id = new_id("alert")
        track.state, track.since, track.alert_id = AlertState.FIRING, now, event_id
        track.message = _message(rule, value, True)
        await self._record(rule, "firing", value, track.message, now, event_id, event_id)
        self._publish(track, "firing", event_id, track.message, value, now)

    async def _resolve(self, track: _Track, value: float | None, now: datetime,
                       message: str, *, store: bool = True) -> None:
        event_id = new_id("alert")
        alert_id = track.alert_id = track.alert_id or event_id
        if store:
            await self._record(track.rule, "resolved", value, message, now, event_id,
                               alert_id)
        self._publish(track, "resolved", event_id, message, value, now)
        track.state, track.since, track.alert_id, track.message = AlertState.OK, None, None, ""

    async def _retire(self, track: _Track, now: datetime, why: str, *,
                      store: bool = True) -> None:
        if track.state is AlertState.FIRING:
            await self._resolve(track, track.value, now,
                                f"{track.rule.name}: resolved, {why}", store=store)

    async def _record(self, rule: Rule, state: str, value: float | None, message: str,
                      now: datetime, event_id: str, alert_id: str) -> None:
        """Store an event; a store that fails is logged, and the alert goes on in memory."""
        try:
            if rule.builtin:  # its row, for the event to belong to; threshold up to date
                cond = rule.condition
                await self.store.alerts.upsert_builtin(
                    rule.id, name=rule.name, metric=cond.metric, op=cond.op,
                    threshold=cond.threshold, condition=rule.text, severity=rule.severity,
                    channels=rule.channels)
            await self.store.alerts.add_event(rule.id, state, value, message, at=now,
                                              model=rule.condition.model,
                                              alert_id=alert_id, event_id=event_id)
        except NotFoundError:
            log.info("alert %s: rule %s is gone; event not stored", alert_id, rule.id)
        except Exception:
            log.exception("alert %s: could not store the %s event", alert_id, state)

    def _publish(self, track: _Track, state: str, event_id: str, message: str,
                 value: float | None, now: datetime) -> None:
        rule = track.rule
        data = self._data(track, state, message, value, now)
        data["event_id"] = event_id
        self.notifier.send(data, rule.summary(), rule.channels)
        envelope = {"type": "system_alert", "data": data}
        for callback in list(self._subscribers):
            try:
                result = callback(envelope)
                if inspect.isawaitable(result):
                    fut = asyncio.ensure_future(result)
                    self._callbacks.add(fut)
                    fut.add_done_callback(self._callbacks.discard)
            except Exception:
                log.exception("alert subscriber %r failed", callback)

    @staticmethod
    def _data(track: _Track, state: str, message: str, value: float | None,
              at: datetime | None) -> dict[str, Any]:
        rule = track.rule
        return {"alert_id": track.alert_id, "rule_id": rule.id, "name": rule.name,
                "severity": rule.severity, "state": state, "message": message,
                "value": value, "threshold": rule.condition.threshold,
                "metric": rule.condition.metric, "model": rule.condition.model,
                "condition": rule.text, "timestamp": iso_z(at)}

    # -- rules ---------------------------------------------------------------------------

    def builtin(self) -> list[Rule]:
        return builtin_rules(self.settings.alert_thresholds)

    async def _enabled_rules(self) -> list[Rule]:
        rows = await self.store.alerts.list_rules(enabled_only=True, builtin=False)
        return [*self.builtin(), *(Rule.of_row(row) for row in rows)]

    async def _restore(self) -> None:
        """Rebuild the firing alerts from the newest stored event of each scope."""
        rules = {r.id: r for r in self.builtin()}
        rules |= {row.id: Rule.of_row(row)
                  for row in await self.store.alerts.list_rules(builtin=False)}
        for event in await self.store.alerts.latest_events():
            rule = rules.get(event.rule_id)
            if event.state != "firing" or rule is None:
                continue
            self._tracks[(event.rule_id, event.model)] = _Track(
                rule, AlertState.FIRING, since=event.at, value=event.value,
                alert_id=event.alert_id or event.id, message=event.message)
        self._restored = True

    def active(self) -> list[dict[str, Any]]:
        """The alerts firing now, oldest first, as ``system_alert`` data."""
        firing = [t for t in self._tracks.values() if t.state is AlertState.FIRING]
        firing.sort(key=lambda t: (t.since is None, t.since))
        return [self._data(t, "firing", t.message, t.value, t.since) for t in firing]

    def status(self, rule: Rule) -> dict[str, Any]:
        """A rule's live state: ok, pending, firing, no_data, disabled or not_evaluated."""
        track = self._tracks.get((rule.id, rule.condition.model))
        if not rule.enabled:
            state = "disabled"
        elif track is None or track.checked_at is None:
            state = "firing" if track is not None else "not_evaluated"
        elif track.no_data and track.state is not AlertState.FIRING:
            state = "no_data"
        else:
            state = track.state.value
        return {"state": state, "no_data": bool(track and track.no_data),
                "value": track.value if track else None,
                "since": iso_z(track.since) if track else None,
                "checked_at": iso_z(track.checked_at) if track else None,
                "alert_id": track.alert_id if track else None}

    async def rules(self, *, reveal: bool = False) -> list[dict[str, Any]]:
        """Every rule, the built-in ones first, with its status."""
        stored = [Rule.of_row(r) for r in await self.store.alerts.list_rules(builtin=False)]
        return [catalog.rule_api(r, self.status(r), reveal=reveal)
                for r in [*self.builtin(), *stored]]

    async def rule(self, rule_id: str, *, reveal: bool = False) -> dict[str, Any]:
        found = next((r for r in self.builtin() if r.id == rule_id), None)
        if found is None:
            row = await self.store.alerts.get_rule(rule_id)
            if row.builtin:  # a built-in rule no longer made (an older version's)
                raise catalog.read_only(rule_id)
            found = Rule.of_row(row)
        return catalog.rule_api(found, self.status(found), reveal=reveal)

    async def create_rule(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Store a rule from a ``POST /config/alerts`` body; it is evaluated from the
        next round on."""
        fields = catalog.stored_fields(spec)
        row = await self.store.alerts.create_rule(**fields)
        rule = Rule.of_row(row)
        return catalog.rule_api(rule, self.status(rule), reveal=True)

    async def update_rule(self, rule_id: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        if catalog.is_builtin(rule_id):
            raise catalog.read_only(rule_id)
        row = await self.store.alerts.get_rule(rule_id)
        row = await self.store.alerts.update_rule(rule_id, catalog.updated_fields(row, spec))
        rule = Rule.of_row(row)
        return catalog.rule_api(rule, self.status(rule), reveal=True)

    async def delete_rule(self, rule_id: str) -> None:
        """Delete a rule with its events; an alert of it that is firing resolves now
        (notified, not stored: its events are gone with it)."""
        if catalog.is_builtin(rule_id):
            raise catalog.read_only(rule_id)
        await self.store.alerts.delete_rule(rule_id)
        async with self._lock:
            for key in [k for k in self._tracks if k[0] == rule_id]:
                await self._retire(self._tracks.pop(key), utcnow(), "its rule was deleted",
                                   store=False)

    async def overview(self, limit: int = 50) -> dict[str, Any]:
        """``GET /alerts``: the active alerts and the newest events, newest first."""
        names = {r.id: r for r in await self.store.alerts.list_rules()}
        history = []
        for event in await self.store.alerts.events(limit=limit):
            row = names.get(event.rule_id)
            history.append({**event.to_api(), "name": row.name if row else None,
                            "severity": row.severity if row else None})
        return {"active": self.active(), "history": history}
