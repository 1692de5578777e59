"""Running slots (``--max-num-seqs``) and the FIFO queue in front of them."""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress


class QueueFull(Exception):
    """Every slot is busy and the queue holds ``max_queue`` requests already."""


class Slots:
    """``capacity`` concurrent requests; the rest wait in arrival order.

    ``reserve`` then ``wait`` takes a slot; ``release`` hands it to the oldest
    waiter (or frees it). ``withdraw`` takes a waiter out of the queue without a
    slot (an abort). ``max_queue`` None means an unbounded queue; 0 means none.
    """

    def __init__(self, capacity: int, max_queue: int | None) -> None:
        if capacity < 1:
            raise ValueError("max-num-seqs must be at least 1")
        self.capacity = capacity
        self.max_queue = max_queue
        self.running = 0
        self._waiters: deque[asyncio.Future[bool]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def reserve(self) -> asyncio.Future[bool]:
        """A future that becomes True once a slot is ours (already so when one is free)
        and False if the request is withdrawn first. Raises QueueFull."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self.running < self.capacity and not self._waiters:
            self.running += 1
            fut.set_result(True)
            return fut
        if self.max_queue is not None and len(self._waiters) >= self.max_queue:
            raise QueueFull
        self._waiters.append(fut)
        return fut

    async def wait(self, fut: asyncio.Future[bool]) -> bool:
        """Whether ``fut`` (from ``reserve``) got a slot. If the caller is cancelled
        meanwhile (a client disconnect), its place or its slot is given up."""
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.result():
                self.release()  # handed a slot just as we were cancelled: pass it on
            else:
                with suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def withdraw(self, fut: asyncio.Future[bool]) -> bool:
        """Take a waiting request out of the queue; its ``wait`` returns False."""
        try:
            self._waiters.remove(fut)
        except ValueError:
            return False
        fut.set_result(False)
        return True

    def release(self) -> None:
        """Give a slot back: to the oldest live waiter, else to the pool."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(True)  # the slot changes hands; running stays the same
                return
        self.running -= 1
