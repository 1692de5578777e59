"""Instances by role: launched per ``roles``, reached at ``endpoints`` (TCP and Unix
sockets), leased by role, replaced in their role; with real simulator processes."""

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from modelfleet.engines import adapter_for
from modelfleet.errors import ModelStartError, UnavailableError
from modelfleet.fleet.health import check_instance
from modelfleet.fleet.model import ManagedModel, ModelState
from modelfleet.settings import ModelConfig
from tests.helpers import free_port, wait_until


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _model(tmp_path: Path, session: aiohttp.ClientSession, **kw: object) -> ManagedModel:
    kw.setdefault("engine", "simulator")
    cfg = ModelConfig(name="sim", model="sim", **kw)  # type: ignore[arg-type]
    return ManagedModel(cfg, adapter_for(cfg.engine), tmp_path, session, start_timeout=30)


async def _stats(session: aiohttp.ClientSession, model: ManagedModel, role: str) -> dict:
    inst = model.instances_of(role)[0]
    async with (inst.session or session).get(inst.base_url + "/stats") as resp:
        stats: dict = await resp.json()
    return stats


async def test_roles_launch_one_engine_per_instance_in_its_role(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    model = _model(tmp_path, session, roles={"encode": 1, "pd": 2}, routing="round_robin")
    assert model.disaggregated  # from the config, before anything runs
    await model.ensure_ready()
    assert Counter(i.role for i in model.instances) == {"encode": 1, "pd": 2}
    assert model.front_role == "pd"
    # each engine was told its role
    assert (await _stats(session, model, "encode"))["role"] == "encode"
    async with model.lease(role="encode") as inst:
        assert inst.role == "encode"
    # a plain lease never hands out the encoder: it cannot answer alone
    leased = []
    for _ in range(6):
        async with model.lease() as inst:
            leased.append(inst)
    assert {i.role for i in leased} == {"pd"} and len(set(leased)) == 2
    with pytest.raises(UnavailableError, match="no decode instance"):
        async with model.lease(role="decode"):
            pass
    await model.stop()


async def test_a_crashed_instance_is_replaced_in_its_role(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    model = _model(tmp_path, session, roles={"prefill": 2, "decode": 1})
    await model.ensure_ready()
    victim = model.instances_of("prefill")[0]
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    for _ in range(300):
        if len(model.instances) == 3 and victim not in model.instances:
            break
        await asyncio.sleep(0.1)
    assert model.state is ModelState.READY
    assert Counter(i.role for i in model.instances) == {"prefill": 2, "decode": 1}
    for inst in model.instances:  # the replacement's engine plays the victim's role
        async with session.get(inst.base_url + "/stats") as resp:
            assert (await resp.json())["role"] == inst.role
    await model.stop()


@pytest.fixture
def hand_started(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two simulators started by hand: an encoder on a Unix socket, a pd on a port."""
    sock = str(tmp_path / "encoder_0")
    port = free_port()
    procs = [
        subprocess.Popen([sys.executable, "-m", "modelfleet.engines.simulator", "--uds", sock,
                          "--role", "encode", "--served-model-name", "sim"]),
        subprocess.Popen([sys.executable, "-m", "modelfleet.engines.simulator", "--port",
                          str(port), "--served-model-name", "sim"]),
    ]
    try:
        wait_until(lambda: os.path.exists(sock), timeout=30)
        yield sock, f"127.0.0.1:{port}"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


async def test_endpoints_are_reached_not_launched(
    tmp_path: Path, session: aiohttp.ClientSession, hand_started: tuple[str, str]
) -> None:
    sock, tcp = hand_started
    model = _model(tmp_path, session, engine="external", endpoints=[
        {"address": f"unix:{sock}", "role": "encode"}, {"address": tcp, "role": "pd"}])
    for _ in range(100):  # the pd simulator may still be binding its port
        try:
            await model.ensure_ready()
            break
        except ModelStartError:
            model.last_failure_at = 0.0
            await asyncio.sleep(0.2)
    encoder, pd = model.instances_of("encode")[0], model.instances_of("pd")[0]
    assert encoder.process is None and pd.process is None
    assert encoder.address == f"ipc://{sock}" and encoder.session is not None
    assert pd.address == f"http://{tcp}" and pd.session is None
    assert model.config_source == "endpoints"
    # the health loop reaches the socket through the instance's own session
    await check_instance(model, encoder)
    assert encoder.healthy is True
    assert (await _stats(session, model, "encode"))["role"] == "encode"
    await model.stop()
    assert encoder.session.closed


async def test_an_endpoint_that_does_not_answer_fails_the_start(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    model = _model(tmp_path, session, engine="external", endpoints=[
        {"address": str(tmp_path / "nobody_here")}])
    with pytest.raises(ModelStartError, match="unreachable"):
        await model.ensure_ready()
    assert model.state is ModelState.FAILED
    await model.stop()
