"""A fleet on one machine: two gateways and two agents over one real Redis and one real
PostgreSQL, simulator engines in every role.

The agents advertise 127.0.0.2 and 127.0.0.3 (loopback addresses of their own), so
every instance record names the host its engine really listens on.
"""

from __future__ import annotations

import base64
import concurrent.futures
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest

from tests.fleet_support import AgentProc, RedisServer, fleet_config, start_agent
from tests.helpers import Gateway, free_port, simulator_model, start_gateway, wait_until
from tests.pg import pg_database_url

pytestmark = pytest.mark.e2e

TTL_S = 3.0
SIM_ARGS = {"decode_ms_per_token": 2, "max_tokens_default": 8}
PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJ"
           "RU5ErkJggg==")


class Fleet:
    def __init__(self, redis: RedisServer, prefix: str, database_url: str, tmp: Path):
        self.redis = redis
        self.prefix = prefix
        self.database_url = database_url
        self.tmp = tmp
        self.agents: dict[str, AgentProc] = {}
        self.gateways: list[Gateway] = []

    def models(self) -> list[dict[str, Any]]:
        return [
            simulator_model("shared-sim", args=SIM_ARGS),
            simulator_model("remote-sim", args=SIM_ARGS, nodes=["a1", "a2"], replicas=2),
            simulator_model("kill-sim", args=SIM_ARGS, nodes=["a2", "a3"], replicas=2),
            simulator_model("epd-sim", args={**SIM_ARGS, "prefill_ms_per_token": 1},
                            nodes=["a1", "a2"], roles={"encode": 1, "prefill": 1, "decode": 1}),
        ]

    def gateway(self, node_id: str) -> Gateway:
        home = self.tmp / node_id
        home.mkdir()
        gw = start_gateway(home, self.models(), **fleet_config(
            self.redis, self.prefix, self.database_url, ttl_s=TTL_S,
            fleet={"node_id": node_id}))
        self.gateways.append(gw)
        return gw

    def agent(self, node_id: str, host: str) -> AgentProc:
        agent = start_agent(self.tmp, self.redis.url, node_id, host, prefix=self.prefix,
                            ttl_s=TTL_S)
        self.agents[node_id] = agent
        return agent

    def view(self, gw: Gateway) -> dict[str, Any]:
        return gw.get("/api/fleet")

    def records(self, gw: Gateway, model: str) -> list[dict[str, Any]]:
        return [r for r in self.view(gw)["instances"] if r["model"] == model]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    redis = RedisServer(free_port()).start()
    with pg_database_url() as url:
        fl = Fleet(redis, f"mf-{uuid.uuid4().hex[:8]}:", url, tmp)
        try:
            fl.agent("a1", "127.0.0.2")
            fl.agent("a2", "127.0.0.3")
            fl.gateway("gw1")
            fl.gateway("gw2")
            yield fl
        finally:
            for gw in fl.gateways:
                gw.stop()
            for agent in fl.agents.values():
                agent.stop()
            redis.stop()


def chat(gw: Gateway, model: str, **kw: Any) -> str:
    answer = gw.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": kw.pop("text", "hello fleet")}],
        **kw)
    return answer.choices[0].message.content or ""


def engines_of(pids: list[int], model: str) -> list[int]:
    """Engine processes among ``pids`` serving ``model`` (by their command line)."""
    out = []
    for pid in pids:
        try:
            cmd = psutil.Process(pid).cmdline()
        except psutil.NoSuchProcess:
            continue
        if "modelfleet.engines.simulator" in cmd and model in cmd:
            out.append(pid)
    return out


def test_fleet_model_on_agents_serves_both_gateways(fleet: Fleet) -> None:
    gw1, gw2 = fleet.gateways[:2]
    assert chat(gw1, "remote-sim")
    records = fleet.records(gw1, "remote-sim")
    assert sorted(r["node"] for r in records) == ["a1", "a2"]
    assert {r["address"].split("//")[1].split(":")[0] for r in records} == {"127.0.0.2",
                                                                            "127.0.0.3"}
    spawned = [engines_of(a.engine_pids(), "remote-sim") for a in fleet.agents.values()]
    assert [len(p) for p in spawned] == [1, 1]
    # The second gateway adopts the running instances: no new engine anywhere.
    for _ in range(4):
        assert chat(gw2, "remote-sim")
    assert [len(engines_of(a.engine_pids(), "remote-sim"))
            for a in fleet.agents.values()] == [1, 1]
    assert gw2.info("remote-sim")["status"] == "ready"
    # Neither gateway runs an engine of its own for it.
    assert not engines_of(gw1.engine_pids() + gw2.engine_pids(), "remote-sim")
    # The engines' output on the agents reaches either gateway's log route.
    messages = [line["message"] for line in gw2.get("/api/models/remote-sim/logs?lines=500")
                ["logs"]]
    for node in ("a1", "a2"):
        assert any(m.startswith(f"[{node}] simulator remote-sim (pd)") for m in messages), \
            messages[-10:]


def test_single_flight_start_across_gateways(fleet: Fleet) -> None:
    gw1, gw2 = fleet.gateways[:2]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: chat((gw1, gw2)[i % 2], "shared-sim"), range(20)))
    assert all(answers)
    engines = engines_of(gw1.engine_pids() + gw2.engine_pids(), "shared-sim")
    assert len(engines) == 1, engines
    records = fleet.records(gw2, "shared-sim")
    assert len(records) == 1 and records[0]["node"] in ("gw1", "gw2")
    assert records[0]["fence"] >= 1


def test_agent_model_stops_everywhere(fleet: Fleet) -> None:
    gw1, gw2 = fleet.gateways[:2]
    assert chat(gw1, "remote-sim")
    assert chat(gw2, "remote-sim")
    r = gw1.post("/api/models/remote-sim/stop?wait=true")
    assert r.status_code == 200, r.text
    wait_until(lambda: not fleet.records(gw1, "remote-sim"), timeout=TTL_S * 3)
    wait_until(lambda: all(not engines_of(a.engine_pids(), "remote-sim")
                           for a in fleet.agents.values()), timeout=20)
    wait_until(lambda: gw2.info("remote-sim")["status"] == "stopped", timeout=TTL_S * 3)
    # And it starts again on demand, from the other gateway.
    assert chat(gw2, "remote-sim")
    assert len(fleet.records(gw1, "remote-sim")) == 2 or wait_until(
        lambda: len(fleet.records(gw1, "remote-sim")) == 2, timeout=TTL_S * 3)


def test_poisoned_records_are_refused(fleet: Fleet) -> None:
    gw1 = fleet.gateways[0]
    client = fleet.redis.client()
    bad = {f"{fleet.prefix}inst:poison-json": b"{not json",
           f"{fleet.prefix}inst:poison-shape": b'{"id": "x", "model": 42}',
           f"{fleet.prefix}inst:poison-huge": b'{"id": "' + b"x" * 100_000 + b'"}'}
    for key, value in bad.items():
        client.set(key, value, px=60_000)
    client.sadd(f"{fleet.prefix}insts", *[k.split("inst:", 1)[1] for k in bad])
    try:
        wait_until(lambda: fleet.view(gw1)["metastore"]["bad_records"] >= 3,
                   timeout=TTL_S * 3)
        assert all(not r["id"].startswith("poison") for r in fleet.view(gw1)["instances"])
        assert chat(gw1, "shared-sim")
    finally:
        client.delete(*bad)


def test_epd_request_across_agents(fleet: Fleet) -> None:
    gw1 = fleet.gateways[0]
    image = "data:image/png;base64," + PNG_1PX
    answer = gw1.client().chat.completions.create(model="epd-sim", messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                     {"type": "text", "text": "what is this"}]}])
    assert answer.choices[0].message.content
    roles = {r["role"]: r for r in fleet.records(gw1, "epd-sim")}
    assert set(roles) == {"encode", "prefill", "decode"}
    assert len({r["node"] for r in roles.values()}) == 2  # spread over both agents
    stats = {role: httpx.get(r["address"] + "/stats", timeout=5).json()
             for role, r in roles.items()}
    assert stats["encode"]["images_encoded"] == 1
    assert stats["prefill"]["requests_by_role"]["prefill"] == 1
    assert stats["decode"]["kv_transferred_tokens"] > 0
    assert stats["decode"]["kv_missing"] == 0


def test_gateway_shutdown_leaves_agent_models_running(fleet: Fleet) -> None:
    gw1 = fleet.gateways[0]
    gw3 = fleet.gateway("gw3")
    assert chat(gw3, "remote-sim")
    before = sorted(r["id"] for r in fleet.records(gw1, "remote-sim"))
    engines = [engines_of(a.engine_pids(), "remote-sim") for a in fleet.agents.values()]
    gw3.stop()
    fleet.gateways.remove(gw3)
    time.sleep(TTL_S)
    assert sorted(r["id"] for r in fleet.records(gw1, "remote-sim")) == before
    assert [engines_of(a.engine_pids(), "remote-sim") for a in fleet.agents.values()] == engines
    assert chat(gw1, "remote-sim")


def test_abort_reaches_the_gateway_that_holds_the_request(fleet: Fleet) -> None:
    gw1, gw2 = fleet.gateways[:2]
    assert chat(gw1, "remote-sim")
    rid = f"abort-{uuid.uuid4().hex[:12]}"
    events: list[str] = []

    def stream() -> None:
        with httpx.stream("POST", gw1.url + "/v1/chat/completions", timeout=60,
                          headers={"X-Request-Id": rid},
                          json={"model": "remote-sim", "stream": True, "max_tokens": 2000,
                                "messages": [{"role": "user", "content": "go on"}]}) as r:
            events.extend(line for line in r.iter_lines() if line.startswith("data:"))

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(stream)
        wait_until(lambda: len(events) > 3, timeout=20, interval=0.02)
        answer = gw2.post("/abort", json={"request_id": rid}).json()
        assert answer == {"aborted": [], "not_found": [rid], "forwarded": [rid]}
        running.result(timeout=20)
    assert events[-1] == "data: [DONE]"
    assert "REQUEST_ABORTED" in events[-2]
    assert len(events) < 2000  # cut short, not run to max_tokens


def test_killed_agent_leaves_routing_within_two_ttls(fleet: Fleet) -> None:
    gw1, gw2 = fleet.gateways[:2]
    a3 = fleet.agent("a3", "127.0.0.4")
    assert chat(gw1, "kill-sim")
    assert sorted(r["node"] for r in fleet.records(gw1, "kill-sim")) == ["a2", "a3"]
    failures: list[str] = []
    stop = False

    def load() -> int:
        done = 0
        while not stop:
            for gw in (gw1, gw2):
                try:
                    chat(gw, "kill-sim")
                    done += 1
                except openai.APIError as exc:
                    failures.append(repr(exc))
        return done

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(load) for _ in range(2)]
        time.sleep(1)
        killed = time.monotonic()
        a3.kill()
        for gw in (gw1, gw2):
            wait_until(lambda gw=gw: [r["node"] for r in fleet.records(gw, "kill-sim")]
                       == ["a2"], timeout=2 * TTL_S, interval=0.05)
        gone_after = time.monotonic() - killed
        time.sleep(1)
        stop = True
        served = sum(r.result() for r in runs)
    assert gone_after < 2 * TTL_S
    assert served > 0
    # Requests that met the dead engine before its record expired moved to the live one.
    assert not failures, failures[:3]
    print(f"\nagent kill: records gone from both gateways after {gone_after:.2f}s "
          f"(TTL {TTL_S}s); {served} requests, {len(failures)} failed")


def test_seed000_metastore_launch_command(tmp_path: Path) -> None:
    """Seed 000's second launch command, with simulator instances that an agent
    registered in Redis (its own config: an encoder and a prefill+decode instance)."""
    import subprocess
    import sys

    redis = RedisServer(free_port()).start()
    media = tmp_path / "image"
    media.mkdir()
    (media / "work.png").write_bytes(base64.b64decode(PNG_1PX))
    served = simulator_model("Qwen2.5-VL-7B-Instruct", args=SIM_ARGS,
                             roles={"encode": 1, "pd": 1})
    agent = start_agent(tmp_path, redis.url, "e1", "127.0.0.2", models=[served])
    port = free_port()
    config = ('{"metastore_client": "RedisMetastoreClient", '
              f'"metastore_address": "{redis.url}"}}')
    log_path = tmp_path / "gateway.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelfleet", "serve",
         "--model", "/workspace/models/Qwen2.5-VL-7B-Instruct",
         "--port", str(port), "--host", "127.0.0.1",
         "--metastore-client-config", config,
         "--allowed-local-media-path", str(media), "--data-dir", str(tmp_path / "data")],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT, cwd=tmp_path)
    gw = Gateway(proc, f"http://127.0.0.1:{port}", tmp_path / "data", log_path)
    try:
        wait_until(lambda: _up(gw), timeout=60)
        answer = gw.client().chat.completions.create(
            model="/workspace/models/Qwen2.5-VL-7B-Instruct",
            messages=[{"role": "system", "content": "You are a helpful assistant."},
                      {"role": "user", "content": [
                          {"type": "image_url",
                           "image_url": {"url": f"file://{media}/work.png"}},
                          {"type": "text", "text": "What is the text in the illustrate?"}]}])
        assert answer.choices[0].message.content
        roles = {r["role"]: r for r in gw.get("/api/fleet")["instances"]}
        assert set(roles) == {"encode", "pd"}
        stats = {role: httpx.get(r["address"] + "/stats", timeout=5).json()
                 for role, r in roles.items()}
        assert stats["encode"]["images_encoded"] == 1
        assert stats["pd"]["mm_hashes_reused"] == 1
    finally:
        gw.stop()
        agent.stop()
        redis.stop()


def _up(gw: Gateway) -> bool:
    if gw.proc.poll() is not None:
        raise RuntimeError(f"gateway exited early:\n{gw.log()}")
    try:
        return httpx.get(gw.url + "/check_health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
