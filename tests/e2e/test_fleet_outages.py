"""A fleet through outages: Redis paused under load, Redis down at start, a gateway
replica killed with requests in flight.

``MODELFLEET_TEST_REDIS_PAUSE_S`` sets the pause (90 s unless told otherwise).
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fleet_support import RedisServer, fleet_config, start_agent
from tests.helpers import Gateway, free_port, simulator_model, start_gateway, wait_until
from tests.pg import pg_database_url

pytestmark = pytest.mark.e2e

TTL_S = 3.0
PAUSE_S = float(os.environ.get("MODELFLEET_TEST_REDIS_PAUSE_S", "90"))
SIM_ARGS = {"decode_ms_per_token": 2, "max_tokens_default": 8}


def chat(gw: Gateway, model: str) -> str:
    answer = gw.client(timeout=30).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}])
    return answer.choices[0].message.content or ""


def chat_with_retry(gateways: list[Gateway], model: str) -> str:
    """What a client of several replicas does: on a connection error, the next one."""
    last: Exception | None = None
    for gw in gateways:
        try:
            return chat(gw, model)
        except openai.APIConnectionError as exc:
            last = exc
    raise AssertionError(f"every replica failed: {last!r}")


@pytest.mark.timeout(PAUSE_S + 240)
def test_redis_pause_keeps_known_instances_serving(tmp_path: Path) -> None:
    redis = RedisServer(free_port()).start()
    prefix = f"mf-{uuid.uuid4().hex[:8]}:"
    models = [simulator_model("paused-sim", args=SIM_ARGS, nodes=["p1"], replicas=2,
                              limits={"max_concurrent": 8, "max_queue": 64})]
    agent = start_agent(tmp_path, redis.url, "p1", "127.0.0.2", prefix=prefix, ttl_s=TTL_S)
    gateways: list[Gateway] = []
    try:
        with pg_database_url() as url:
            for name in ("g1", "g2"):
                (tmp_path / name).mkdir()
                gateways.append(start_gateway(tmp_path / name, models, **fleet_config(
                    redis, prefix, url, ttl_s=TTL_S, fleet={"node_id": name})))
            for gw in gateways:
                assert chat(gw, "paused-sim")
            latencies: list[float] = []
            failures: list[str] = []
            stop_at = time.monotonic() + PAUSE_S + 4

            def load(gw: Gateway) -> None:
                while time.monotonic() < stop_at:
                    began = time.monotonic()
                    try:
                        chat(gw, "paused-sim")
                        latencies.append(time.monotonic() - began)
                    except openai.APIError as exc:
                        failures.append(repr(exc))

            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                runs = [pool.submit(load, gw) for gw in gateways * 2]
                time.sleep(2)
                redis.client().execute_command("CLIENT", "PAUSE", int(PAUSE_S * 1000), "ALL")
                paused_at = time.monotonic()
                for run in runs:
                    run.result()
            during = len(latencies)
            assert time.monotonic() - paused_at >= PAUSE_S
            # After the pause the fleet is whole again: both gateways see the metastore.
            for gw in gateways:
                wait_until(lambda gw=gw: gw.get("/api/fleet")["metastore"]["available"],
                           timeout=15)
                assert chat(gw, "paused-sim")
    finally:
        for gw in gateways:
            gw.stop()
        agent.stop()
        redis.client().execute_command("CLIENT", "UNPAUSE")
        redis.stop()
    assert not failures, failures[:3]
    assert during > 0
    ordered = sorted(latencies)
    print(f"\nredis paused {PAUSE_S:.0f}s under load: {during} requests, {len(failures)} "
          f"failed; latency p50 {statistics.median(ordered) * 1000:.1f} ms, "
          f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.1f} ms, "
          f"max {ordered[-1] * 1000:.1f} ms")


def test_redis_down_at_start_serves_config_and_last_view(tmp_path: Path) -> None:
    redis = RedisServer(free_port()).start()
    prefix = f"mf-{uuid.uuid4().hex[:8]}:"
    models: list[dict[str, Any]] = [
        simulator_model("local-sim", args=SIM_ARGS),
        {"name": "disc", "engine": "simulator", "model": "disc", "discover": True}]
    agent = start_agent(tmp_path, redis.url, "d1", "127.0.0.2", prefix=prefix, ttl_s=TTL_S,
                        models=[simulator_model("disc", args=SIM_ARGS)])
    home = tmp_path / "gw"
    home.mkdir()
    settings = fleet_config(redis, prefix, ttl_s=TTL_S, fleet={"node_id": "gw"})
    gw = start_gateway(home, models, **settings)
    try:
        wait_until(lambda: any(r["model"] == "disc" for r in gw.get("/api/fleet")["instances"]),
                   timeout=15)
        assert chat(gw, "disc")
        gw.stop()
        redis.stop()
        # Redis down: the gateway starts on its config and the last view it saved.
        gw = start_gateway(home, models, **settings)
        view = gw.get("/api/fleet")
        assert view["metastore"]["available"] is False
        assert any(r["model"] == "disc" for r in view["instances"])
        assert chat(gw, "local-sim")
        assert chat(gw, "disc")
        # Redis back: the gateway and the agent reconnect on their own.
        redis.start()
        wait_until(lambda: gw.get("/api/fleet")["metastore"]["available"], timeout=15)
        wait_until(lambda: [n["id"] for n in gw.get("/api/fleet")["nodes"]
                            if n["kind"] == "agent"] == ["d1"], timeout=15)
        assert chat(gw, "disc")
    finally:
        gw.stop()
        agent.stop()
        redis.stop()


def test_replica_death_loses_no_request_that_had_not_begun(tmp_path: Path) -> None:
    redis = RedisServer(free_port()).start()
    prefix = f"mf-{uuid.uuid4().hex[:8]}:"
    # One slot per gateway, so most requests wait in the dying replica's queue.
    models = [simulator_model("slow-sim", nodes=["r1"],
                              args={"decode_ms_per_token": 40, "max_tokens_default": 10},
                              limits={"max_concurrent": 1, "max_queue": 32})]
    agent = start_agent(tmp_path, redis.url, "r1", "127.0.0.2", prefix=prefix, ttl_s=TTL_S)
    gateways: list[Gateway] = []
    try:
        with pg_database_url() as url:
            for name in ("doomed", "survivor"):
                (tmp_path / name).mkdir()
                gateways.append(start_gateway(tmp_path / name, models, **fleet_config(
                    redis, prefix, url, ttl_s=TTL_S, fleet={"node_id": name})))
            doomed, survivor = gateways
            assert chat(doomed, "slow-sim")
            engines = agent.engine_pids()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                runs = [pool.submit(chat_with_retry, [doomed, survivor], "slow-sim")
                        for _ in range(8)]
                time.sleep(0.6)
                doomed.proc.send_signal(signal.SIGKILL)
                answers = [run.result(timeout=60) for run in runs]
            assert all(answers)
            assert agent.engine_pids() == engines  # the agent's engine outlived the gateway
    finally:
        for gw in gateways:
            gw.stop()
        agent.stop()
        redis.stop()
