"""The Redis backend against a real Redis: its key layout, poisoned records, lost
connections, and a Redis that is down or hangs."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from modelfleet.errors import MetastoreUnavailableError
from modelfleet.metastore import Event, RedisMetastore, open_metastore
from tests.helpers import free_port
from tests.unit.metastore.conftest import (
    OP_TIMEOUT_S,
    REDIS_URL,
    MakeStore,
    RedisServer,
    until,
)
from tests.unit.metastore.test_contract import instance, next_event, node

# A generous bound on calls that must not hang: several times the op timeout.
HANG_GUARD_S = 10 * OP_TIMEOUT_S


async def test_redis_layout_one_key_per_record_with_its_own_ttl(
    make_redis_store: MakeStore, redis: Redis, prefix: str,
) -> None:
    store = await make_redis_store()
    await store.put_instance(instance("a/chat/pd/1"), ttl_s=30)
    await store.put_node(node("agent-1"), ttl_s=5)
    assert await redis.type(f"{prefix}inst:a/chat/pd/1") == b"string"
    assert 29_000 < await redis.pttl(f"{prefix}inst:a/chat/pd/1") <= 30_000
    assert 4_000 < await redis.pttl(f"{prefix}node:agent-1") <= 5_000
    assert await redis.smembers(f"{prefix}insts") == {b"a/chat/pd/1"}
    assert await redis.smembers(f"{prefix}nodes") == {b"agent-1"}


async def test_redis_index_is_pruned_lazily_when_a_record_expires(
    make_redis_store: MakeStore, redis: Redis, prefix: str,
) -> None:
    store = await make_redis_store()
    await store.put_instance(instance("a/chat/pd/1"), ttl_s=0.2)
    await store.put_instance(instance("b/chat/pd/1"), ttl_s=30)
    await store.put_node(node("agent-1"), ttl_s=0.2)
    await asyncio.sleep(0.4)
    # Expired keys are gone, but nothing has read the index yet.
    assert await redis.scard(f"{prefix}insts") == 2
    assert [i.id for i in await store.instances()] == ["b/chat/pd/1"]
    assert await redis.smembers(f"{prefix}insts") == {b"b/chat/pd/1"}
    assert await store.nodes() == []
    assert await redis.scard(f"{prefix}nodes") == 0
    # A member written back is indexed again.
    await store.put_instance(instance("a/chat/pd/1"), ttl_s=30)
    assert {i.id for i in await store.instances()} == {"a/chat/pd/1", "b/chat/pd/1"}


async def test_redis_poisoned_records_are_refused_counted_and_logged_once(
    make_redis_store: MakeStore, redis: Redis, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    store = await make_redis_store()
    good = instance("a/chat/pd/1")
    await store.put_instance(good, ttl_s=30)
    poison = {
        "bad-json": b"{not json",
        "wrong-fields": b'{"id": "wrong-fields", "model": "chat"}',
        "extra-field": good.model_copy(update={"id": "extra-field"}).model_dump_json()
        .replace('"load":0', '"load":0,"shell":"rm -rf /"').encode(),
        "oversized": good.model_copy(update={"id": "oversized", "engine": "x"})
        .model_dump_json().replace('"engine":"x"', '"engine":"' + "x" * 70_000 + '"').encode(),
        "not-its-key": good.model_copy(update={"id": "elsewhere"}).model_dump_json().encode(),
        "binary": b"\xff\xfe\x00garbage",
    }
    for id_, raw in poison.items():
        await redis.set(f"{prefix}inst:{id_}", raw, ex=30)
        await redis.sadd(f"{prefix}insts", id_)
    await redis.sadd(f"{prefix}insts", b"x" * 1000)  # an index member no id can be
    await redis.hset(f"{prefix}assign:agent-1", "chat", b'{"model": "chat"}')
    await redis.set(f"{prefix}lock:start:chat", b"not-a-token", ex=30)

    with caplog.at_level(logging.WARNING, logger="modelfleet.metastore"):
        assert await store.instances() == [good]
        assert await store.instances("chat") == [good]
        assert await store.assignments("agent-1") == {}
        assert await store.holder("start:chat") is None
    assert isinstance(store, RedisMetastore)
    # Each poisoned instance twice, the long member once (then dropped), assignment, lock.
    assert store.bad_records == 2 * len(poison) + 1 + 2
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    for id_ in poison:  # read twice, logged once
        assert sum(f"inst:{id_}'" in line for line in refused) == 1, id_
    assert await redis.sismember(f"{prefix}insts", b"x" * 1000) == 0  # dropped from the index
    assert await redis.exists(f"{prefix}inst:bad-json") == 1  # refused, not deleted


async def test_redis_poisoned_event_is_skipped_and_the_next_one_arrives(
    make_redis_store: MakeStore, redis: Redis, prefix: str,
) -> None:
    store = await make_redis_store()
    sub = store.subscribe()
    await redis.publish(f"{prefix}events", b'{"kind": "node_up", "at": "yesterday"}')
    await redis.publish(f"{prefix}events", b"\x00" * 100_000)
    await store.publish(Event(kind="node_up", data={"node": "agent-1"}, at=time.time()))
    event = await next_event(sub)
    assert event.kind == "node_up" and event.data == {"node": "agent-1"}
    assert store.bad_records == 2


async def test_redis_events_cross_processes_and_survive_a_killed_connection(
    make_redis_store: MakeStore, redis: Redis,
) -> None:
    gateway, agent = await make_redis_store(), await make_redis_store()
    assert isinstance(agent, RedisMetastore)
    first, second = agent.subscribe(), agent.subscribe()
    await gateway.publish(Event(kind="assignment", data={"node": "agent-1"}, at=time.time()))
    for sub in (first, second):
        assert (await next_event(sub)).kind == "assignment"

    # Kill the agent's own subscriber connection (only ours: other runs share this Redis).
    clients = await redis.client_list(_type="pubsub")
    ours = [c["id"] for c in clients if c.get("name") == agent.conn.client_name]
    assert len(ours) == 1
    await redis.execute_command("CLIENT", "KILL", "ID", ours[0])
    for sub in (first, second):
        assert (await next_event(sub)).kind == "resync"
    assert agent.listening
    await gateway.publish(Event(kind="instance_up", data={"id": "a/chat/pd/1"}, at=time.time()))
    for sub in (first, second):
        assert (await next_event(sub)).data == {"id": "a/chat/pd/1"}


async def test_redis_closed_port_fails_fast_and_start_does_not_raise(
    make_redis_store: MakeStore,
) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        store = await make_redis_store(f"redis://127.0.0.1:{free_port()}/0",
                                       op_timeout_s=OP_TIMEOUT_S)
        assert not store.available
        sub = store.subscribe()
        for call in (store.nodes(), store.instances(), store.put_node(node("n"), ttl_s=5),
                     store.acquire("start:chat", ttl_s=5), store.assignments("n"),
                     store.publish(Event(kind="x", at=time.time()))):
            with pytest.raises(MetastoreUnavailableError) as info:
                await call
            assert info.value.status == 503 and info.value.code == "METASTORE_UNAVAILABLE"
        await store.close()
        assert await anext(sub, None) is None


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    for writer in held:
        writer.close()


async def test_redis_that_never_answers_times_out_instead_of_hanging(
    make_redis_store: MakeStore, silent_server: int,
) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        store = await make_redis_store(f"redis://127.0.0.1:{silent_server}/0",
                                       op_timeout_s=OP_TIMEOUT_S)
        assert not store.available
        with pytest.raises(MetastoreUnavailableError):
            await store.instances()


@pytest.fixture
def pausable_url(request: pytest.FixtureRequest) -> str:
    """A private redis-server when one can be started, else the shared one."""
    if shutil.which("redis-server") and shutil.which("redis-cli"):
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    return REDIS_URL


async def test_redis_client_pause_fails_calls_fast_and_they_recover(
    make_redis_store: MakeStore, pausable_url: str,
) -> None:
    store = await make_redis_store(pausable_url, op_timeout_s=OP_TIMEOUT_S)
    admin = Redis.from_url(pausable_url)
    await store.put_instance(instance("a/chat/pd/1"), ttl_s=60)
    try:
        await admin.execute_command("CLIENT", "PAUSE", "2000", "ALL")
        async with asyncio.timeout(HANG_GUARD_S):
            # A caller cancelled during a stuck command leaves, without waiting for Redis.
            pending = asyncio.create_task(store.holder("start:chat"))
            await asyncio.sleep(0.1)
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            with pytest.raises(MetastoreUnavailableError, match="did not answer in time"):
                await store.instances()
            assert not store.available
            # Known down: the next call does not wait for Redis at all.
            with pytest.raises(MetastoreUnavailableError, match="is unavailable"):
                await store.acquire("start:chat", ttl_s=5)
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")  # answered once the pause is over
        await admin.aclose()
    await until(lambda: store.available)
    assert [i.id for i in await store.instances()] == ["a/chat/pd/1"]
    assert await store.acquire("start:chat", ttl_s=5) is not None


async def test_redis_restart_is_survived_by_callers_and_subscribers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture,
) -> None:
    store = open_metastore(redis_server.url, prefix="mf:", op_timeout_s=OP_TIMEOUT_S)
    other = open_metastore(redis_server.url, prefix="mf:", op_timeout_s=OP_TIMEOUT_S)
    assert isinstance(store, RedisMetastore)
    try:
        await store.start()
        await other.start()
        sub = store.subscribe()
        token = await store.acquire("start:chat", ttl_s=60)
        await asyncio.to_thread(redis_server.stop)
        await until(lambda: not store.available)
        with pytest.raises(MetastoreUnavailableError):
            await store.holder("start:chat")
        await asyncio.to_thread(redis_server.start)  # empty: nothing was saved
        await until(lambda: store.available and other.available)
        assert (await next_event(sub)).kind == "resync"
        await until(lambda: store.listening)
        assert token is not None and await store.holder("start:chat") is None
        # The counter was lost with the data; Lua scripts are loaded again on their own.
        assert await other.acquire("start:chat", ttl_s=5) is not None
        await other.publish(Event(kind="node_up", at=time.time()))
        assert (await next_event(sub)).kind == "node_up"
    finally:
        await store.close()
        await other.close()
    assert "available again" in caplog.text
