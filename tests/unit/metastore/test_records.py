"""Record validation, the subscriber backlog bound, and the metastore's configuration."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from modelfleet.errors import ConfigError
from modelfleet.metastore import (
    Assignment,
    Event,
    InstanceRecord,
    MemoryMetastore,
    NodeRecord,
    RedisMetastore,
    open_metastore,
    parse_client_config,
)
from modelfleet.metastore.fanout import MAX_BACKLOG
from modelfleet.metastore.records import MAX_RECORD_BYTES, decode, encode
from tests.unit.metastore.test_contract import instance, node


def test_records_round_trip_through_their_json() -> None:
    for rec in (instance("a/chat/pd/1", role="prefill", pid=42, fence=3), node("agent-1")):
        assert decode(type(rec), encode(rec)) == rec
    a = Assignment(model="chat", config={"engine": "vllm", "args": ["--x"]}, fence=2,
                   gateway="gw-1", at=time.time())
    assert decode(Assignment, encode(a)).roles == {"pd": 1}


@pytest.mark.parametrize("change", [
    {"id": "has space"}, {"id": "x" * 201}, {"model": ""}, {"role": "leader"},
    {"address": "ftp://host/x"}, {"address": "unix:relative"}, {"node": "a/b"},
    {"load": -1}, {"pid": 0}, {"state": "weird"}, {"engine": "x" * 65},
    {"started_at": float("inf")}, {"extra": 1},
])
def test_instance_record_refuses_bad_fields(change: dict[str, object]) -> None:
    raw = json.loads(encode(instance("a/chat/pd/1")))
    raw.update(change)
    with pytest.raises(ValueError):
        decode(InstanceRecord, json.dumps(raw))


@pytest.mark.parametrize("change", [
    {"devices": [{"id": "gpu0", "memory_mb": 1}]}, {"devices": [{"id": "cpu"}]},
    {"devices": [{"id": "cpu", "memory_mb": 1}] * 65}, {"kind": "worker"},
    {"host": "a b"}, {"control_url": "javascript:alert(1)"},
    {"capacity": {f"k{n}": 1 for n in range(33)}},
])
def test_node_record_refuses_bad_fields(change: dict[str, object]) -> None:
    raw = json.loads(encode(node("agent-1")))
    raw.update(change)
    with pytest.raises(ValueError):
        decode(NodeRecord, json.dumps(raw))


def test_assignment_and_event_refuse_bad_fields() -> None:
    base = {"model": "chat", "config": {}, "fence": 1, "gateway": "gw-1", "at": 1.0}
    for change in ({"roles": {"leader": 1}}, {"roles": {"pd": 65}}, {"roles": {}},
                   {"fence": 0}, {"config": "x"}):
        with pytest.raises(ValueError):
            decode(Assignment, json.dumps({**base, **change}))
    for bad in ({"kind": "Node Up", "at": 1.0}, {"kind": "x", "at": 1.0, "source": "s" * 300},
                {"kind": "x"}):
        with pytest.raises(ValueError):
            decode(Event, json.dumps(bad))
    with pytest.raises(ValueError, match="over"):
        decode(Event, b" " * (MAX_RECORD_BYTES + 1))


async def test_slow_subscriber_loses_its_oldest_events_not_the_publisher() -> None:
    store = MemoryMetastore()
    slow, fast = store.subscribe(), store.subscribe()
    seen: list[int] = []

    async def read_fast() -> None:
        async for event in fast:
            seen.append(event.data["n"])

    reader = asyncio.create_task(read_fast())
    for n in range(MAX_BACKLOG + 10):
        await store.publish(Event(kind="tick", data={"n": n}, at=0.0))
        if n % 100 == 0:
            await asyncio.sleep(0)
    await store.close()
    await asyncio.wait_for(reader, 5)
    assert seen == list(range(MAX_BACKLOG + 10))
    kept = [event.data["n"] async for event in slow]
    assert kept == list(range(10, MAX_BACKLOG + 10))
    assert slow.dropped == 10


def test_parse_client_config_reads_seed_000s_flag() -> None:
    text = """{
        "metastore_client": "RedisMetastoreClient",
        "metastore_address": "redis://127.0.0.1:6379/0"
        }"""
    assert parse_client_config(text) == "redis://127.0.0.1:6379/0"
    assert parse_client_config("  ") is None


@pytest.mark.parametrize(("text", "says"), [
    ("{not json", "not valid JSON"),
    ('["redis://x"]', "JSON object"),
    ('{"metastore_client": "EtcdMetastoreClient", "metastore_address": "redis://h"}',
     "not supported"),
    ('{"metastore_address": "redis://h"}', "not supported"),
    ('{"metastore_client": "RedisMetastoreClient", "metastore_address": "http://h:6379"}',
     "redis://"),
    ('{"metastore_client": "RedisMetastoreClient", "metastore_address": "redis://h:99999"}',
     "not a valid URL"),
    ('{"metastore_client": "RedisMetastoreClient", "metastore_address": 6379}', "redis://"),
    ('{"metastore_client": "RedisMetastoreClient", "metastore_address": "redis://h",'
     ' "password": "x"}', "unknown key"),
    ("{" + " " * 5000 + "}", "longer than"),
])
def test_parse_client_config_refuses_clearly(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as info:
        parse_client_config(text)
    assert "--metastore-client-config" in info.value.message


async def test_open_metastore_picks_the_backend_from_the_url() -> None:
    assert isinstance(open_metastore(None), MemoryMetastore)
    for url in ("redis://127.0.0.1:6379/0", "rediss://user:secret@cache:6380/1",
                "unix:///run/redis.sock"):
        store = open_metastore(url)
        assert isinstance(store, RedisMetastore) and store.name == "redis"
        assert "secret" not in store.conn.where
        await store.close()
    for bad in ("http://127.0.0.1:6379", "127.0.0.1:6379", "redis://", "unix://rel/sock"):
        with pytest.raises(ConfigError):
            open_metastore(bad)
