"""Events handed to every local subscriber, each through a bounded queue.

Delivery never waits: a subscriber ``MAX_BACKLOG`` events behind loses its oldest
event (counted in ``dropped``), so a slow consumer cannot slow the publisher or the
other subscribers. Events are hints; the state they speak of is in the records, which
a subscriber that lost events reads again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from modelfleet.metastore.records import Event

log = logging.getLogger("modelfleet.metastore")

MAX_BACKLOG = 1024


class Subscription(AsyncIterator[Event]):
    """One subscriber's events, from the moment it was made until it or the fan-out
    closes (then iteration ends)."""

    def __init__(self, fanout: Fanout):
        self._fanout = fanout
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(MAX_BACKLOG + 1)
        self.dropped = 0

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self._queue.get()
        if event is None:
            self._queue.put_nowait(None)  # every later call ends too
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Stop receiving; iteration ends once the events already queued are read."""
        self._fanout.discard(self)
        self._end()

    def _put(self, event: Event) -> None:
        if self._queue.qsize() >= MAX_BACKLOG:
            self._queue.get_nowait()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % MAX_BACKLOG == 0:
                log.warning("a metastore subscriber fell %d events behind; %d dropped so far",
                            MAX_BACKLOG, self.dropped)
        self._queue.put_nowait(event)

    def _end(self) -> None:
        # One slot beyond MAX_BACKLOG is kept for this marker, so it always fits.
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)


class Fanout:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self.closed = False

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        if self.closed:
            sub._end()
        else:
            self._subs.add(sub)
        return sub

    def discard(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def deliver(self, event: Event) -> None:
        for sub in list(self._subs):
            sub._put(event)

    def close(self) -> None:
        """End every subscription; later ones end at once."""
        self.closed = True
        for sub in self._subs:
            sub._end()
        self._subs.clear()

    def __len__(self) -> int:
        return len(self._subs)
