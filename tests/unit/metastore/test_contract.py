"""What every metastore backend promises, run against the in-process one and a real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest

from modelfleet.errors import InvalidRequestError
from modelfleet.metastore import (
    Assignment,
    DeviceInfo,
    Event,
    InstanceRecord,
    Metastore,
    NodeRecord,
)
from modelfleet.metastore.fanout import Subscription


def instance(id_: str, model: str = "chat", **kw: object) -> InstanceRecord:
    now = time.time()
    node = id_.split("/", 1)[0]
    return InstanceRecord.model_validate({
        "id": id_, "model": model, "address": f"http://10.0.0.1:{8000 + len(id_)}",
        "engine": "simulator", "node": node, "started_at": now, "updated_at": now, **kw,
    })


def node(id_: str, kind: str = "agent") -> NodeRecord:
    now = time.time()
    return NodeRecord.model_validate({
        "id": id_, "kind": kind, "host": "10.0.0.2", "control_url": "http://10.0.0.2:9000",
        "devices": [DeviceInfo(id="cuda:0", name="H100", memory_mb=81559).model_dump()],
        "capacity": {"models": 4}, "started_at": now, "heartbeat_at": now,
    })


def assignment(model: str, fence: int, **kw: object) -> Assignment:
    return Assignment.model_validate({"model": model, "config": {"name": model, "engine": "vllm"},
                                      "fence": fence, "gateway": "gw-1", "at": time.time(),
                                      **kw})


async def next_event(sub: Subscription, timeout: float = 5.0) -> Event:
    return await asyncio.wait_for(anext(sub), timeout)


async def test_metastore_instance_not_renewed_expires_and_others_stay(store: Metastore) -> None:
    await store.put_instance(instance("a/chat/pd/1"), ttl_s=0.3)
    await store.put_instance(instance("b/chat/pd/1"), ttl_s=30)
    await store.put_instance(instance("b/embed/pd/2", model="embed"), ttl_s=30)
    assert {i.id for i in await store.instances()} == {"a/chat/pd/1", "b/chat/pd/1",
                                                       "b/embed/pd/2"}
    await asyncio.sleep(0.5)
    assert {i.id for i in await store.instances()} == {"b/chat/pd/1", "b/embed/pd/2"}
    assert [i.id for i in await store.instances("chat")] == ["b/chat/pd/1"]
    assert [i.id for i in await store.instances("embed")] == ["b/embed/pd/2"]
    assert await store.instances("other") == []


async def test_metastore_renewed_instance_stays_with_its_latest_fields(store: Metastore) -> None:
    for load in range(6):
        await store.put_instance(instance("a/chat/pd/1", load=load), ttl_s=0.3)
        await asyncio.sleep(0.1)
    [rec] = await store.instances()
    assert rec.load == 5 and rec.address.startswith("http://")
    await store.remove_instance("a/chat/pd/1")
    assert await store.instances() == []


async def test_metastore_nodes_expire_and_are_removed(store: Metastore) -> None:
    await store.put_node(node("gw-1", "gateway"), ttl_s=30)
    await store.put_node(node("agent-1"), ttl_s=0.3)
    await store.put_node(node("agent-2"), ttl_s=30)
    nodes = {n.id: n for n in await store.nodes()}
    assert set(nodes) == {"gw-1", "agent-1", "agent-2"}
    assert nodes["agent-1"].devices[0].memory_mb == 81559
    await asyncio.sleep(0.5)
    await store.remove_node("agent-2")
    assert [n.id for n in await store.nodes()] == ["gw-1"]


async def test_metastore_lock_tokens_increase_and_only_the_holder_releases(
    store: Metastore,
) -> None:
    first = await store.acquire("start:chat", ttl_s=10)
    assert first is not None
    assert await store.acquire("start:chat", ttl_s=10) is None  # held by another
    assert await store.holder("start:chat") == first
    assert not await store.release("start:chat", first + 1)
    assert not await store.renew("start:chat", first - 1, ttl_s=10)
    assert await store.renew("start:chat", first, ttl_s=10)
    assert await store.release("start:chat", first)
    assert await store.holder("start:chat") is None
    assert not await store.release("start:chat", first)  # released already
    second = await store.acquire("start:chat", ttl_s=10)
    assert second is not None and second > first
    other = await store.acquire("start:embed", ttl_s=10)  # another lock: its own tokens
    assert other is not None


async def test_metastore_stale_fence_cannot_write_an_assignment(store: Metastore) -> None:
    old = await store.acquire("start:chat", ttl_s=10)
    assert old is not None
    assert await store.put_assignment("agent-1", assignment("chat", old), "start:chat")
    assert await store.release("start:chat", old)
    new = await store.acquire("start:chat", ttl_s=10)
    assert new is not None and new > old
    # The old holder, unaware its lock went away, tries to write: refused.
    assert not await store.put_assignment("agent-1", assignment("chat", old, roles={"pd": 2}),
                                          "start:chat")
    assert (await store.assignments("agent-1"))["chat"].roles == {"pd": 1}
    assert await store.put_assignment(
        "agent-1", assignment("chat", new, roles={"prefill": 1, "decode": 2}), "start:chat")
    got = await store.assignments("agent-1")
    assert got["chat"].fence == new and got["chat"].roles == {"prefill": 1, "decode": 2}
    # A token of another lock does not count.
    assert not await store.put_assignment("agent-1", assignment("embed", new), "start:embed")
    await store.remove_assignment("agent-1", "chat")
    assert await store.assignments("agent-1") == {}
    assert await store.assignments("agent-2") == {}


async def test_metastore_lock_expires_and_its_token_goes_stale(store: Metastore) -> None:
    old = await store.acquire("start:chat", ttl_s=0.2)
    assert old is not None
    await asyncio.sleep(0.4)
    assert await store.holder("start:chat") is None
    new = await store.acquire("start:chat", ttl_s=10)
    assert new is not None and new > old
    assert not await store.renew("start:chat", old, ttl_s=10)
    assert not await store.release("start:chat", old)
    assert not await store.put_assignment("agent-1", assignment("chat", old), "start:chat")
    assert await store.holder("start:chat") == new


async def test_metastore_renew_keeps_a_lock(store: Metastore) -> None:
    token = await store.acquire("start:chat", ttl_s=0.3)
    assert token is not None
    for _ in range(5):
        await asyncio.sleep(0.1)
        assert await store.renew("start:chat", token, ttl_s=0.3)
    assert await store.holder("start:chat") == token


async def test_metastore_events_reach_every_subscriber_in_order(store: Metastore) -> None:
    first, second = store.subscribe(), store.subscribe()
    assert isinstance(first, Subscription)
    for n in range(3):
        await store.publish(Event(kind="instance_up", data={"n": n}, source="gw-1",
                                  at=time.time()))
    for sub in (first, second):
        got = [await next_event(sub) for _ in range(3)]
        assert [(e.kind, e.data["n"], e.source) for e in got] == [
            ("instance_up", 0, "gw-1"), ("instance_up", 1, "gw-1"), ("instance_up", 2, "gw-1")]
    token = await store.acquire("start:chat", ttl_s=10)
    assert token is not None and await store.release("start:chat", token)
    released = await next_event(first)
    assert released.kind == "lock_released"
    assert released.data == {"lock": "start:chat", "token": token}
    await first.aclose()
    await store.publish(Event(kind="abort", data={"request_ids": ["r1"]}, at=time.time()))
    assert (await next_event(second)).kind == "lock_released"
    assert (await next_event(second)).kind == "abort"
    assert [e async for e in first] == []  # closed: no more events


async def test_metastore_subscription_ends_when_the_metastore_closes(store: Metastore) -> None:
    sub = store.subscribe()
    reader = asyncio.create_task(anext(sub, None))
    await asyncio.sleep(0.05)
    await store.close()
    assert await asyncio.wait_for(reader, 5) is None
    assert await anext(store.subscribe(), None) is None  # after close: ends at once


async def test_metastore_refuses_oversized_records_on_write(store: Metastore) -> None:
    huge = assignment("chat", 1, config={"args": ["x" * 1000] * 100})
    token = await store.acquire("start:chat", ttl_s=10)
    assert token is not None
    with pytest.raises(InvalidRequestError, match="bytes"):
        await store.put_assignment("agent-1", huge.model_copy(update={"fence": token}),
                                   "start:chat")
    with pytest.raises(InvalidRequestError):
        await store.publish(Event(kind="big", data={"blob": "x" * 70_000}, at=time.time()))
    assert await store.assignments("agent-1") == {}


async def test_metastore_refuses_ttls_out_of_range(store: Metastore) -> None:
    for ttl in (0, -1, float("nan"), 10**9):
        with pytest.raises(ValueError):
            await store.put_instance(instance("a/chat/pd/1"), ttl_s=ttl)
        with pytest.raises(ValueError):
            await store.acquire("start:chat", ttl_s=ttl)
    assert await store.instances() == []
