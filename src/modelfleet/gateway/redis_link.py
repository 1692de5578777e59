"""The admission backend's connection to Redis: scripts, health, and release notifications.

Every command runs in a task of its own that the caller awaits through ``shield``:
redis-py can swallow a cancellation that lands mid-command (the request would then go
on after its client left), and a command cut in half costs its connection. So a
cancelled caller gets ``CancelledError`` at once, and the command still completes
before the caller's cleanup runs (a release then never overtakes the acquire it undoes).

A failed command marks Redis down for ``retry_s``; callers check ``usable`` and use
their in-process fallback meanwhile. A warning is logged at most every 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

log = logging.getLogger("modelfleet.gateway.admission")

REDIS_ERRORS = (RedisError, OSError)
_WARN_EVERY_S = 30.0
T = TypeVar("T")


class RedisLink:
    """One Redis client with its scripts, down/up tracking and a pub/sub wake-up channel."""

    def __init__(self, url: str, channel: str, *, retry_s: float = 5.0, timeout_s: float = 2.0):
        self.url = url
        self.channel = channel
        self.retry_s = retry_s
        # One immediate retry re-dials a pooled connection that went stale.
        self.redis = Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._wakers: dict[str, set[asyncio.Future[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._down_until = 0.0
        self._down = False
        self.timeout_s = timeout_s
        self._warned_at = -_WARN_EVERY_S

    def script(self, source: str) -> AsyncScript:
        return self.redis.register_script(source)

    async def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """Run ``script``; a cancelled caller returns at once, the script still lands first."""
        result = await _shielded(script(keys=keys, args=args))
        if self._down:  # the probe answered: everyone back on Redis
            self._down = False
            self._down_until = 0.0
        return result

    @property
    def usable(self) -> bool:
        """Whether to use Redis now. Once ``retry_s`` has passed after a failure, one
        caller probes it; the others keep to the fallback until the probe answers, so
        an outage (or a paused Redis) costs one request per ``retry_s`` a timeout, not
        every request that arrives while the probe waits."""
        now = time.monotonic()
        if now < self._down_until:
            return False
        if self._down:
            self._down_until = now + self.timeout_s * 2  # this caller is the probe
        return True

    def failed(self, exc: BaseException) -> None:
        """Note a failed command: Redis is skipped for ``retry_s``."""
        self._down = True
        self._down_until = time.monotonic() + self.retry_s
        self.warn(exc)

    def warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning(
                "Redis at %s failed (%s: %s); admission uses this process's own counters "
                "and tries Redis again in %g s", self.url, type(exc).__name__, exc, self.retry_s,
            )

    async def sleep(self, gate: str, seconds: float) -> None:
        """Sleep until a release of ``gate`` is published, or ``seconds`` at most."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        wakers = self._wakers.setdefault(gate, set())
        wakers.add(fut)
        timer = loop.call_later(seconds, _wake, fut)
        try:
            await fut
        finally:
            timer.cancel()
            wakers.discard(fut)

    def start(self, *jobs: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start the listener and ``jobs`` (once, on the running loop)."""
        if not self._tasks:
            self._tasks = [asyncio.create_task(job()) for job in (self._listen, *jobs)]

    async def _listen(self) -> None:
        """Wake this process's waiters of a gate whenever any gateway publishes its name."""
        while not self._closing:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    while not self._closing:
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                        if msg is not None:
                            for fut in list(self._wakers.get(msg["data"].decode(), ())):
                                _wake(fut)
            except REDIS_ERRORS as exc:
                self.warn(exc)
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # The listener also stops on its flag within a second if redis-py eats the cancel.
            await asyncio.wait(self._tasks, timeout=2.0)
        self._tasks = []
        with contextlib.suppress(*REDIS_ERRORS):
            await self.redis.aclose()


async def _shielded(coro: Awaitable[T]) -> T:
    task = asyncio.ensure_future(coro)
    task.add_done_callback(_consume)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned command logs no "never retrieved"
