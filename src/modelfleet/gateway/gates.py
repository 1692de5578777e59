"""Concurrency gates: at most N requests hold a slot, the rest wait in a bounded priority queue.

A ``Gate`` is one limit (a model's ``limits.max_concurrent`` or the fleet-wide
``server.max_concurrent_requests``). ``acquire`` returns at once when a slot is free
and nobody waits; otherwise the caller joins the queue, which serves the highest
priority first, then the oldest. A full queue refuses at once (``QueueFullError``);
a wait longer than the timeout raises ``QUEUE_TIMEOUT``. A slot is handed straight from
the releaser to the next waiter, so ``running`` never dips while others wait.

Cancellation: a cancelled waiter leaves the queue. If its slot was granted in the same
loop iteration as the cancel, the waiter passes the slot on, so no slot leaks. All
state lives on the event loop; nothing here blocks.

``InProcessBackend`` (rate windows plus gates by name) is the default admission
backend; ``RedisBackend`` shares the same behaviour between processes.
"""

from __future__ import annotations

import asyncio
import heapq
from dataclasses import dataclass
from typing import Any

from modelfleet.errors import QueueFullError, UnavailableError
from modelfleet.gateway.ratelimit import WINDOW_S, RateWindow


@dataclass(frozen=True, slots=True)
class GateSpec:
    """A gate's name and limits. ``max_concurrent`` None: no limit (the gate only counts)."""

    name: str
    max_concurrent: int | None
    max_queue: int


def queue_bound(max_concurrent: int | None, max_queue: int | None) -> int:
    """The queue length a limit gets: as configured, else four times the concurrency."""
    if max_queue is not None:
        return max_queue
    return 0 if max_concurrent is None else 4 * max_concurrent


def queue_full(name: str, size: int, max_size: int) -> QueueFullError:
    return QueueFullError(
        f"the queue of {name} is full ({size} waiting); retry later",
        retry_after=1,
        extra={"queue_size": size, "max_queue_size": max_size},
    )


def queue_timeout(name: str, timeout: float) -> UnavailableError:
    return UnavailableError(
        f"no slot of {name} came free within {timeout:.3g} s of waiting in its queue",
        code="QUEUE_TIMEOUT",
        retry_after=1,
    )


class Gate:
    """One concurrency limit with its queue, on the running event loop."""

    def __init__(self, spec: GateSpec):
        self.name = spec.name
        self.max_concurrent = spec.max_concurrent
        self.max_queue = spec.max_queue
        self.running = 0
        self.waiting = 0
        self.peak_running = 0
        self.rejected = 0
        self.timed_out = 0
        # (-priority, arrival, future); entries whose future is done are dead and skipped.
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = 0

    def configure(self, spec: GateSpec) -> None:
        """Apply new limits; a raised limit admits waiters at once."""
        self.max_concurrent = spec.max_concurrent
        self.max_queue = spec.max_queue
        while self.waiting and self._has_room() and self._hand_over():
            self._count_in()

    async def acquire(self, priority: int = 0, timeout: float | None = None) -> float:
        """Take a slot, waiting at most ``timeout`` s; returns the seconds spent queued."""
        if not self.waiting and self._has_room():
            self._count_in()
            return 0.0
        if self.waiting >= self.max_queue:
            self.rejected += 1
            raise queue_full(self.name, self.waiting, self.max_queue)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._arrivals += 1
        heapq.heappush(self._heap, (-priority, self._arrivals, fut))
        self.waiting += 1
        start = loop.time()
        try:
            async with asyncio.timeout(timeout):
                await fut
        except BaseException as exc:
            granted = fut.done() and not fut.cancelled()
            if not granted:
                fut.cancel()  # release() skips it from now on
                self.waiting -= 1
                self._compact()
            if isinstance(exc, TimeoutError):
                if granted:  # the slot came as the time ran out: keep it
                    return loop.time() - start
                self.timed_out += 1
                raise queue_timeout(self.name, timeout or 0.0) from None
            if granted:  # cancelled as the slot arrived: pass it on
                self.release()
            raise
        return loop.time() - start

    def release(self) -> None:
        """Give a slot back: to the best waiter if there is room for it, else to the pool."""
        if self.waiting and (self.max_concurrent is None or self.running <= self.max_concurrent):
            if self._hand_over():
                return
        self.running -= 1

    def stats(self) -> dict[str, Any]:
        return {
            "max_concurrent": self.max_concurrent,
            "max_queue": self.max_queue,
            "running": self.running,
            "waiting": self.waiting,
            "peak_running": self.peak_running,
            "rejected": self.rejected,
            "timed_out": self.timed_out,
        }

    def _has_room(self) -> bool:
        return self.max_concurrent is None or self.running < self.max_concurrent

    def _count_in(self) -> None:
        self.running += 1
        if self.running > self.peak_running:
            self.peak_running = self.running

    def _hand_over(self) -> bool:
        """Grant the slot to the best live waiter; False when there is none."""
        heap = self._heap
        while heap:
            fut = heapq.heappop(heap)[2]
            if not fut.done():
                fut.set_result(None)
                self.waiting -= 1
                return True
        return False

    def _compact(self) -> None:
        """Drop dead entries once they outnumber the live ones (cancel storms)."""
        if len(self._heap) > 2 * self.waiting + 32:
            self._heap = [entry for entry in self._heap if not entry[2].done()]
            heapq.heapify(self._heap)


class LocalSlot:
    """A slot held on an in-process gate."""

    __slots__ = ("gate",)

    def __init__(self, gate: Gate):
        self.gate = gate

    async def release(self) -> None:
        self.gate.release()


class InProcessBackend:
    """Admission state of this process alone: rate windows and gates by name."""

    name = "in_process"

    def __init__(self, window_s: int = WINDOW_S, rates: RateWindow | None = None):
        self.rates = rates or RateWindow(window_s)
        self.gates: dict[str, Gate] = {}

    async def check_rate(self, key_id: str, rpm: int | None, tpm: int | None) -> None:
        self.rates.check(key_id, rpm, tpm)

    async def record_tokens(self, key_id: str, tokens: int) -> None:
        self.rates.record(key_id, tokens)

    async def acquire(
        self, spec: GateSpec, priority: int, timeout: float
    ) -> tuple[LocalSlot, float]:
        gate = self.gates.get(spec.name)
        if gate is None:
            gate = self.gates[spec.name] = Gate(spec)
        elif gate.max_concurrent != spec.max_concurrent or gate.max_queue != spec.max_queue:
            gate.configure(spec)
        queued = await gate.acquire(priority, timeout)
        return LocalSlot(gate), queued

    def stats(self) -> dict[str, Any]:
        return {name: gate.stats() for name, gate in self.gates.items()}

    async def close(self) -> None:
        return None
