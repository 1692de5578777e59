"""Fixtures: each metastore backend, a real Redis, and a private Redis server to break.

The shared Redis is ``MODELFLEET_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``);
an unreachable one FAILS these tests (CI starts one). Each test uses its own key prefix
and deletes its keys afterwards. Tests that pause or restart Redis use a private
``redis-server`` on a free port, so other test runs on the shared one are not disturbed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from modelfleet.metastore import Metastore, open_metastore
from tests.fleet_support import RedisServer
from tests.helpers import free_port

REDIS_URL = os.environ.get("MODELFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
OP_TIMEOUT_S = 0.5  # tests of outages: a command that hangs fails this fast
# Everywhere else: generous, so a loaded machine is not mistaken for an outage.
CONTRACT_TIMEOUT_S = 5.0

MakeStore = Callable[..., Awaitable[Metastore]]


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def _connect() -> Redis:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({type(exc).__name__}: {exc}). Start it, "
            "or point MODELFLEET_TEST_REDIS_URL at one; the metastore tests never skip.",
            pytrace=False,
        )
    return client


async def _drop(client: Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = await _connect()
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    prefix = f"mf-test-{secrets.token_hex(6)}:"
    yield prefix
    await _drop(redis, prefix)


@pytest.fixture
async def make_redis_store(prefix: str) -> AsyncIterator[MakeStore]:
    """Started Redis metastores sharing ``prefix`` (several processes' views of one fleet)."""
    made: list[Metastore] = []

    async def make(url: str = REDIS_URL, op_timeout_s: float = CONTRACT_TIMEOUT_S) -> Metastore:
        store = open_metastore(url, prefix=prefix, op_timeout_s=op_timeout_s)
        made.append(store)
        await store.start()
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Metastore]:
    """Each backend in turn: the contract tests hold for both."""
    if request.param == "memory":
        memory = open_metastore(None)
        await memory.start()
        yield memory
        await memory.close()
        return
    client = await _connect()
    prefix = f"mf-test-{secrets.token_hex(6)}:"
    shared = open_metastore(REDIS_URL, prefix=prefix, op_timeout_s=CONTRACT_TIMEOUT_S)
    try:
        await shared.start()
        yield shared
    finally:
        await shared.close()
        await _drop(client, prefix)
        await client.aclose()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port()).start()
    try:
        yield server
    finally:
        server.stop()
