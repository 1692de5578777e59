"""The coordinator's decisions that need no other process: dealing instances over nodes,
addresses, and when a missing record is believed gone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from modelfleet.engines import adapter_for
from modelfleet.fleet.coordinator import Coordinator, address_url, spread
from modelfleet.fleet.model import ManagedModel, ModelState
from modelfleet.metastore import InstanceRecord, MetastoreUnavailableError
from modelfleet.metastore.memory import MemoryMetastore
from modelfleet.settings import ModelConfig


def test_spread_deals_roles_over_nodes_in_turn() -> None:
    assert spread({"encode": 1, "prefill": 1, "decode": 1}, ["a", "b"]) == {
        "a": {"encode": 1, "decode": 1}, "b": {"prefill": 1}}
    assert spread({"pd": 4}, ["a", "b"]) == {"a": {"pd": 2}, "b": {"pd": 2}}
    assert spread({"pd": 1}, ["a", "b", "c"]) == {"a": {"pd": 1}}


def test_address_url_forms() -> None:
    assert address_url("http://10.0.0.2:8000/") == "http://10.0.0.2:8000"
    assert address_url("10.0.0.2:8000") == "http://10.0.0.2:8000"
    assert address_url("unix:/tmp/enc") == "unix:/tmp/enc"


def _record(rid: str, model: str = "m", node: str = "agent-1", **kw: Any) -> InstanceRecord:
    now = time.time()
    return InstanceRecord(id=rid, model=model, address=f"http://127.0.0.2:{kw.pop('port', 9000)}",
                          engine="simulator", node=node, started_at=now, updated_at=now, **kw)


class FlakyStore(MemoryMetastore):
    """The in-process metastore, made unreachable on demand (an outage we can switch)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def instances(self, model: str | None = None) -> list[InstanceRecord]:
        if self.down:
            raise MetastoreUnavailableError("down")
        return await super().instances(model)


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession() as s:
        yield s


def _model(session: aiohttp.ClientSession, tmp_path: Path) -> ManagedModel:
    cfg = ModelConfig(name="m", engine="simulator", model="m", discover=True)
    return ManagedModel(cfg, adapter_for("simulator"), tmp_path, session, 5.0)


async def test_missing_record_is_believed_gone_only_after_a_reachable_ttl(
        tmp_path: Path, session: aiohttp.ClientSession) -> None:
    store = FlakyStore()
    coordinator = Coordinator(store, "gw", ttl_s=0.3, data_dir=tmp_path)
    model = _model(session, tmp_path)
    model.coordinator = coordinator
    await store.put_instance(_record("agent-1/m/pd/9000"), ttl_s=60)
    await coordinator.start({"m": model})
    try:
        await model.start()
        assert [i.record_id for i in model.instances] == ["agent-1/m/pd/9000"]
        await asyncio.sleep(0.35)
        await coordinator.refresh()  # reachable for a whole TTL now
        # An outage, during which the record expires unrenewed.
        store.down = True
        with pytest.raises(MetastoreUnavailableError):
            await coordinator.refresh()
        await store.remove_instance("agent-1/m/pd/9000")
        store.down = False
        await coordinator.refresh()  # back, but not for a TTL yet: the last view stands
        assert model.state is ModelState.READY and len(model.instances) == 1
        assert "agent-1/m/pd/9000" in coordinator.records
        await asyncio.sleep(0.35)
        await coordinator.refresh()
        assert model.instances == [] and model.state is ModelState.STOPPED
    finally:
        await coordinator.close()


async def test_view_survives_a_restart_through_its_file(
        tmp_path: Path, session: aiohttp.ClientSession) -> None:
    store = MemoryMetastore()
    first = Coordinator(store, "gw", ttl_s=5, data_dir=tmp_path)
    await store.put_instance(_record("agent-1/m/pd/9000"), ttl_s=60)
    await store.put_instance(_record("gw/m/pd/9001", node="gw", port=9001), ttl_s=60)
    await first.start({})
    await first.close()
    down = FlakyStore()
    down.down = True
    second = Coordinator(down, "gw", ttl_s=5, data_dir=tmp_path)
    await second.start({})
    try:
        # Our own engines died with the last run; the agent's are still known.
        assert list(second.records) == ["agent-1/m/pd/9000"]
    finally:
        await second.close()


async def test_discovered_model_without_instances_fails_after_a_ttl(
        tmp_path: Path, session: aiohttp.ClientSession) -> None:
    coordinator = Coordinator(MemoryMetastore(), "gw", ttl_s=0.2, data_dir=tmp_path)
    model = _model(session, tmp_path)
    await coordinator.start({"m": model})
    try:
        began = time.monotonic()
        with pytest.raises(Exception, match="no instance of 'm' is registered"):
            await coordinator.launch(model, _never)
        assert time.monotonic() - began < 2
    finally:
        await coordinator.close()


async def _never() -> list[Any]:
    raise AssertionError("a discovered model is never launched here")
