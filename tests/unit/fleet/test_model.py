"""The lifecycle state machine, driven with real simulator engine processes."""

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from modelfleet.engines import adapter_for
from modelfleet.errors import ModelStartError
from modelfleet.fleet.model import ManagedModel, ModelState
from modelfleet.settings import ModelConfig


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _model(tmp_path: Path, session: aiohttp.ClientSession, **kw: object) -> ManagedModel:
    cfg = ModelConfig(name="sim", engine="simulator", model="sim", **kw)  # type: ignore[arg-type]
    return ManagedModel(cfg, adapter_for("simulator"), tmp_path, session, start_timeout=30)


async def test_model_single_flight_start(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    model = _model(tmp_path, session)
    await asyncio.gather(*(model.ensure_ready() for _ in range(20)))
    assert model.state is ModelState.READY
    assert model.start_count == 1
    pid = model.instances[0].pid
    assert pid is not None
    async with session.get(model.instances[0].base_url + "/health") as resp:
        assert resp.status == 200
    await model.stop()
    assert model.state is ModelState.STOPPED and model.instances == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_model_failed_start_reaches_every_waiter_then_backs_off(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    model = _model(tmp_path, session, args={"no_such_flag": 1})
    results = await asyncio.gather(*(model.ensure_ready() for _ in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(r, ModelStartError) for r in results)
    assert model.start_count == 1
    assert model.state is ModelState.FAILED
    assert "exited with code 2" in (model.failure_reason or "")
    assert any("unrecognized arguments" in line.message for line in model.log.ring)
    # The first retry is immediate; the one after a second failure waits.
    with pytest.raises(ModelStartError):
        await model.ensure_ready()
    assert model.start_count == 2
    with pytest.raises(ModelStartError, match="retrying in") as info:
        await model.ensure_ready()
    assert model.start_count == 2
    assert info.value.retry_after is not None and info.value.retry_after > 0


async def test_model_crash_marks_failed_and_restarts(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    model = _model(tmp_path, session)
    await model.ensure_ready()
    pid = model.instances[0].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if model.state is ModelState.FAILED:
            break
        await asyncio.sleep(0.05)
    assert model.state is ModelState.FAILED
    assert "code -9" in (model.failure_reason or "")
    await model.ensure_ready()
    assert model.state is ModelState.READY and model.start_count == 2
    assert model.instances[0].pid != pid
    await model.stop()


async def test_model_stop_waits_for_start_and_lease_restarts(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    model = _model(tmp_path, session)
    starting = asyncio.create_task(model.ensure_ready())
    await asyncio.sleep(0.05)
    assert model.state is ModelState.STARTING
    await model.stop()
    assert model.state is ModelState.STOPPED
    await starting  # the start itself completed before the stop ran
    async with model.lease() as instance:
        assert model.in_flight == 1 and instance.outstanding == 1
    assert model.in_flight == 0 and model.start_count == 2
    await model.stop()


async def test_model_replicas_spread_leases(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    model = _model(tmp_path, session, replicas=2)
    await model.ensure_ready()
    assert len({i.pid for i in model.instances}) == 2
    async with model.lease() as a, model.lease() as b:
        assert a is not b
    await model.stop()
