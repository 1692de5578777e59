"""The live feed behind ``/ws/monitor``: events fanned out to every subscriber.

Events (seed 002's, plus ``request_metrics``): ``model_status_update`` when a
model's state changes, ``gpu_metrics_update`` per GPU at each system sample,
``system_alert`` when an alert fires or resolves, and ``request_metrics`` every
second with each model's running, waiting, rate, TTFT and latency.

Publishing never waits: each subscriber has a bounded queue, and one that falls
``MAX_BACKLOG`` events behind is dropped (its connection is closed), so a slow
consumer cannot slow the gateway or the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("modelfleet.feed")

MAX_BACKLOG = 256
# The names a client subscribes with (seed 002) → the event types they bring.
TOPICS = {"model_status": "model_status_update", "gpu_metrics": "gpu_metrics_update",
          "system_alerts": "system_alert", "request_metrics": "request_metrics"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(MAX_BACKLOG)
        self.types: set[str] = set(TOPICS.values())
        self.dropped = False

    def subscribe(self, topics: list[str]) -> list[str]:
        """Keep only these topics (seed 002's names or the event types); the unknown ones
        are returned."""
        wanted = {TOPICS.get(t, t) for t in topics}
        unknown = sorted(t for t in topics if TOPICS.get(t, t) not in TOPICS.values())
        self.types = wanted & set(TOPICS.values())
        return unknown


class LiveFeed:
    def __init__(self, models: Callable[[], dict[str, Any]],
                 request_figures: Callable[[], dict[str, Any]]):
        """``models`` gives each model's ``{status, health}``; ``request_figures`` each
        model's request figures."""
        self._models = models
        self._figures = request_figures
        self.subscribers: set[Subscriber] = set()
        self._last: dict[str, tuple[str, str]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._last = {name: (m["status"], m["health"]) for name, m in self._models().items()}
        self._tasks = [asyncio.create_task(self._every(0.25, self._check_models)),
                       asyncio.create_task(self._every(1.0, self._request_metrics))]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in list(self.subscribers):
            self._drop(sub)

    def join(self) -> Subscriber:
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def leave(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to every subscriber of its type, never waiting."""
        for sub in list(self.subscribers):
            if event["type"] not in sub.types:
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.info("dropping a live-feed subscriber %d events behind", MAX_BACKLOG)
                self._drop(sub)

    def _drop(self, sub: Subscriber) -> None:
        sub.dropped = True
        self.subscribers.discard(sub)
        with contextlib.suppress(asyncio.QueueEmpty):
            sub.queue.get_nowait()  # room for the closing marker
        sub.queue.put_nowait(None)

    async def _every(self, seconds: float, step: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                step()
            except Exception:  # noqa: BLE001 - the feed goes on
                log.exception("live feed step failed")

    def _check_models(self) -> None:
        current = self._models()
        for name, m in current.items():
            state = (m["status"], m["health"])
            if self._last.get(name) != state:
                self.publish({"type": "model_status_update", "data": {
                    "model_id": m.get("id") or name, "model_name": name, "status": state[0],
                    "health": state[1], "timestamp": now_iso()}})
        self._last = {name: (m["status"], m["health"]) for name, m in current.items()}

    def _request_metrics(self) -> None:
        if not any("request_metrics" in s.types for s in self.subscribers):
            return
        self.publish({"type": "request_metrics", "data": {
            "models": self._figures(), "timestamp": now_iso(), "at": time.time()}})
