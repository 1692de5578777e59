"""Placement over a declared 2-GPU inventory, with real simulator engine processes."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from modelfleet.errors import InsufficientResourcesError
from modelfleet.fleet.model import ModelState
from modelfleet.fleet.placement import need_mb, weights_mb
from modelfleet.fleet.registry import Fleet
from modelfleet.settings import ModelConfig, Settings

GPUS = [{"id": "cuda:0", "memory_mb": 10_000}, {"id": "cuda:1", "memory_mb": 10_000}]
EITHER_GPU = [{"name": "gpu0", "devices": ["cuda:0"]}, {"name": "gpu1", "devices": ["cuda:1"]}]


def _sim(name: str, mb: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "engine": "simulator", "model": name, "profiles": EITHER_GPU,
            "resource_requirements": {"gpu_memory": mb}, **kw}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _fleet(tmp_path: Path, session: aiohttp.ClientSession, *models: dict) -> Fleet:
    settings = Settings(data_dir=tmp_path, devices=GPUS, models=list(models))  # type: ignore[arg-type]
    return Fleet(settings, session)


def test_need_from_requirements_or_weights(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\0" * (3 * 1024 * 1024))
    (tmp_path / "notes.txt").write_bytes(b"\0" * (5 * 1024 * 1024))
    assert weights_mb(str(tmp_path)) == 4
    cfg = ModelConfig(name="m", model=str(tmp_path))
    assert need_mb(cfg, ["cpu"]) == int(4 * 1.2) + 256
    assert need_mb(cfg, ["cuda:0", "cuda:1"]) == int(4 * 1.2 / 2) + 512
    cfg = ModelConfig(name="m", model=str(tmp_path), resource_requirements={"gpu_memory": 7000})
    assert need_mb(cfg, ["cuda:0"]) == 7000
    assert need_mb(ModelConfig(name="s", engine="simulator", model="s"), []) == 0


async def test_placement_stops_the_least_recently_used_idle_model(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    fleet = await _fleet(tmp_path, session, _sim("a", 8000), _sim("b", 8000), _sim("c", 8000))
    a, b, c = (fleet.get(n) for n in "abc")
    try:
        await a.start()
        await b.start()
        assert (a.config_source, b.config_source) == ("gpu0", "gpu1")
        async with b.lease():
            pass  # b is now the most recently used
        await c.start()
        assert a.state is ModelState.STOPPED
        assert b.state is ModelState.READY
        assert c.config_source == "gpu0" and c.held_devices() == {"cuda:0"}
        assert any("make room for c" in line.message for line in a.log.ring)
    finally:
        await fleet.close()


async def test_placement_never_stops_a_busy_model(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    fleet = await _fleet(tmp_path, session, _sim("a", 8000), _sim("b", 8000), _sim("c", 8000))
    a, b, c = (fleet.get(n) for n in "abc")
    try:
        await asyncio.gather(a.start(), b.start())
        async with a.lease(), b.lease():
            with pytest.raises(InsufficientResourcesError, match="busy"):
                await c.start()
        assert a.state is ModelState.READY and b.state is ModelState.READY
        assert c.state is ModelState.FAILED
    finally:
        await fleet.close()


async def test_placement_refuses_a_model_that_can_never_fit(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    fleet = await _fleet(tmp_path, session, _sim("a", 8000), _sim("huge", 20_000))
    try:
        await fleet.get("a").start()
        with pytest.raises(InsufficientResourcesError, match="can never fit") as info:
            await fleet.get("huge").start()
        assert info.value.code == "INSUFFICIENT_RESOURCES" and info.value.status == 503
        assert fleet.get("a").state is ModelState.READY  # nothing was stopped for it
    finally:
        await fleet.close()


async def test_placement_spreads_replicas_and_counts_starting_ones(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    fleet = await _fleet(tmp_path, session, _sim("r", 6000, replicas=2))
    try:
        await fleet.get("r").start()
        assert fleet.get("r").held_devices() == {"cuda:0", "cuda:1"}
        await fleet.get("r").stop()
        assert fleet.placement.free_mb({d.id: d for d in fleet.placement.inventory.devices()}) \
            == {"cuda:0": 10_000, "cuda:1": 10_000}
    finally:
        await fleet.close()
