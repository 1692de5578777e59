"""The Redis backend's connection: bounded commands, up/down tracking, the health check.

Every command runs in a task of its own that the caller awaits through ``shield``, with
``op_timeout_s`` as the bound: redis-py can lose a cancellation that lands during an
in-flight command (a plain ``asyncio.timeout`` around it may then never fire), and a
command cut in half costs its connection. A command that times out is left to finish
on its own (its socket timeout is the same bound); the caller has its answer already.

A failed or late command marks Redis down: ``available`` turns False and, while the
health check runs, commands fail at once with ``MetastoreUnavailableError`` instead of
each waiting out the timeout. The health check PINGs every second and marks Redis up
again when it answers (after a restart, a network cut or a ``CLIENT PAUSE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from modelfleet.errors import MetastoreUnavailableError

log = logging.getLogger("modelfleet.metastore")

T = TypeVar("T")
REDIS_ERRORS = (RedisError, OSError)  # OSError covers TimeoutError and refused connections
CHECK_EVERY_S = 1.0
_WARN_EVERY_S = 30.0


def redacted(url: str) -> str:
    """``url`` without its credentials, for logs and errors."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}" \
        f"{parts.path}"


class RedisConn:
    def __init__(self, url: str, *, op_timeout_s: float):
        self.url = url
        self.where = redacted(url)
        self.op_timeout_s = op_timeout_s
        # A name per metastore, so its connections can be told apart in CLIENT LIST.
        self.client_name = f"modelfleet-metastore-{secrets.token_hex(4)}"
        common: dict[str, Any] = dict(
            socket_connect_timeout=op_timeout_s, socket_timeout=op_timeout_s,
            client_name=self.client_name,
        )
        # One immediate retry re-dials a pooled connection that went stale (a restart).
        self.redis = Redis.from_url(url, retry=Retry(NoBackoff(), 1), **common)
        # The subscriber's errors must reach us (we announce a resync), not be retried away.
        self.sub_redis = Redis.from_url(url, retry=Retry(NoBackoff(), 0), **common)
        self.up = True
        self.down_at = 0.0  # monotonic time of the last change from up to down
        self.checking = False  # the health check runs: a down Redis fails calls at once
        self.came_back: Callable[[], None] = lambda: None
        self._warned_at = -_WARN_EVERY_S

    async def call(self, make: Callable[[], Awaitable[T]], *, probe: bool = False) -> T:
        """Run one command (or pipeline, or script), bounded by ``op_timeout_s``.

        Raises ``MetastoreUnavailableError`` when Redis is down, fails or is late; a
        cancelled caller gets ``CancelledError`` once the command is over (or late)."""
        if not self.up and self.checking and not probe:
            raise MetastoreUnavailableError(
                f"the metastore (Redis at {self.where}) is unavailable", retry_after=1)
        task = asyncio.ensure_future(make())
        task.add_done_callback(_consume)
        try:
            async with asyncio.timeout(self.op_timeout_s):
                result = await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller left: let its command land first (a release never overtakes the
            # acquire it undoes), but never wait longer than a command may take.
            await asyncio.wait([task], timeout=self.op_timeout_s)
            raise
        except ResponseError as exc:
            # Redis answered: it is up; the data or the command was wrong.
            raise MetastoreUnavailableError(
                f"the metastore refused a command: {exc}",
                details={"error": type(exc).__name__}) from None
        except REDIS_ERRORS as exc:
            self.down(exc)
            what = "did not answer in time" if isinstance(exc, TimeoutError) else "failed"
            raise MetastoreUnavailableError(
                f"the metastore (Redis at {self.where}) {what}", retry_after=1,
                details={"error": type(exc).__name__}) from None
        if not self.up:
            self.up = True
            log.warning("metastore: Redis at %s is available again", self.where)
            self.came_back()
        return result

    def down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.up:
            self.up = False
            self.down_at = now
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning("metastore: Redis at %s is unavailable (%s: %s); checking every %g s",
                        self.where, type(exc).__name__,
                        exc or f"no answer within {self.op_timeout_s:g} s", CHECK_EVERY_S)

    async def check(self) -> bool:
        """PING once; True when Redis answered (and is marked up again)."""
        try:
            await self.call(self.redis.ping, probe=True)
        except MetastoreUnavailableError:
            return False
        return True

    async def check_forever(self) -> None:
        self.checking = True
        try:
            while True:
                await asyncio.sleep(CHECK_EVERY_S)
                await self.check()
        finally:
            self.checking = False

    async def close(self) -> None:
        for client in (self.redis, self.sub_redis):
            with contextlib.suppress(*REDIS_ERRORS):
                async with asyncio.timeout(self.op_timeout_s):
                    await client.aclose()


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned command logs no "never retrieved"
