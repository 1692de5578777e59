"""Seed 002's configuration API against a running gateway: shape, validation,
persistence across a restart, and the knobs applied while it runs."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import Gateway, simulator_model, start_gateway, wait_until

SEED_FIELDS = {"gpu_monitor_interval", "max_concurrent_models", "default_model_timeout",
               "health_check_interval", "log_level", "alert_thresholds"}
SEED_THRESHOLDS = {"gpu_utilization_high", "gpu_temperature_high", "response_time_high",
                   "error_rate_high"}


def _put(gw: Gateway, body: Any, prefix: str = "/api") -> httpx.Response:
    return httpx.put(gw.url + prefix + "/config", json=body, timeout=30)


def test_get_put_validate_and_persist(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("sim-a")])
    try:
        cfg = gw.get("/api/config")
        assert set(cfg) == SEED_FIELDS and set(cfg["alert_thresholds"]) == SEED_THRESHOLDS
        assert cfg["log_level"] == "INFO" and cfg["max_concurrent_models"] == 10
        assert gw.get("/api/v1/config") == cfg

        # seed 002's PUT example: a partial body, thresholds merged key by key
        r = _put(gw, {"gpu_monitor_interval": 60, "max_concurrent_models": 15,
                      "alert_thresholds": {"gpu_utilization_high": 85,
                                           "gpu_temperature_high": 75}})
        assert r.status_code == 200, r.text
        new = r.json()
        assert new["gpu_monitor_interval"] == 60 and new["max_concurrent_models"] == 15
        assert new["alert_thresholds"]["gpu_utilization_high"] == 85
        assert new["alert_thresholds"]["error_rate_high"] == 0.05  # untouched key kept
        assert gw.get("/api/config") == new

        # refused with 422 naming the field; nothing changes
        for body, field in [
            ({"max_concurrent_models": 0}, "max_concurrent_models"),
            ({"log_level": "loud"}, "log_level"),
            ({"alert_thresholds": {"error_rate_high": 2}}, "alert_thresholds.error_rate_high"),
            ({"alert_thresholds": {"nope": 1}}, "alert_thresholds.nope"),
            ({"colour": "blue"}, "colour"),
            ({"default_model_timeout": "soon"}, "default_model_timeout"),
        ]:
            r = _put(gw, body, "/api/v1")
            assert r.status_code == 422, (body, r.text)
            err = r.json()["error"]
            assert err["param"] == field and field in err["message"], r.text
        r = httpx.put(gw.url + "/api/config", content=b"[1, 2]", timeout=10,
                      headers={"content-type": "application/json"})
        assert r.status_code == 422 and "object" in r.json()["error"]["message"]
        r = httpx.put(gw.url + "/api/config", content=b"{nope", timeout=10,
                      headers={"content-type": "application/json"})
        assert r.status_code in (400, 422), r.text
        assert gw.get("/api/config") == new

        r = _put(gw, {"log_level": "debug", "default_model_timeout": 120})
        assert r.json()["log_level"] == "DEBUG" and r.json()["default_model_timeout"] == 120
        new = r.json()
    finally:
        gw.stop()

    gw = start_gateway(tmp_path, [simulator_model("sim-a")])  # same data_dir and store
    try:
        assert gw.get("/api/config") == new
    finally:
        gw.stop()

    # what the config file says wins over what was stored
    gw = start_gateway(tmp_path, [simulator_model("sim-a")], max_concurrent_models=3,
                       alert_thresholds={"gpu_temperature_high": 70})
    try:
        cfg = gw.get("/api/config")
        assert cfg["max_concurrent_models"] == 3
        assert cfg["alert_thresholds"]["gpu_temperature_high"] == 70
        assert cfg["alert_thresholds"]["gpu_utilization_high"] == 85  # stored, not in file
        assert cfg["gpu_monitor_interval"] == 60
    finally:
        gw.stop()


def _chat(gw: Gateway, model: str) -> None:
    gw.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)


def test_max_concurrent_models_applies_live(tmp_path: Path) -> None:
    models = [simulator_model("sim-a"), simulator_model("sim-b"), simulator_model("sim-c")]
    gw = start_gateway(tmp_path, models)
    try:
        for name in ("sim-a", "sim-b"):
            _chat(gw, name)
        assert _put(gw, {"max_concurrent_models": 2}).status_code == 200
        _chat(gw, "sim-c")  # the least recently used idle model makes room
        states = {n: gw.info(n)["status"] for n in ("sim-a", "sim-b", "sim-c")}
        assert states == {"sim-a": "stopped", "sim-b": "ready", "sim-c": "ready"}, states
        assert any("max_concurrent_models 2" in line["message"]
                   for line in gw.get("/api/models/sim-a/logs")["logs"])

        assert _put(gw, {"max_concurrent_models": 1}).status_code == 200
        # sim-b and sim-c both run and neither is busy: one of them goes for sim-a
        _chat(gw, "sim-a")
        running = [n for n in ("sim-a", "sim-b", "sim-c") if gw.info(n)["status"] == "ready"]
        assert "sim-a" in running
    finally:
        gw.stop()


def test_busy_models_are_not_evicted(tmp_path: Path) -> None:
    slow = simulator_model("slow", args={"stall_first_byte_s": 5})
    gw = start_gateway(tmp_path, [slow, simulator_model("sim-b")],
                       max_concurrent_models=1)
    try:
        worker = threading.Thread(target=_chat, args=(gw, "slow"))
        worker.start()
        wait_until(lambda: gw.info("slow")["pending_requests"] == 1, timeout=20)
        r = gw.post("/v1/chat/completions", json={
            "model": "sim-b", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["code"] == "INSUFFICIENT_RESOURCES" and "max_concurrent_models" in \
            err["message"]
        worker.join(30)
        assert gw.info("slow")["status"] == "ready"
    finally:
        gw.stop()


def test_health_checks_replace_a_frozen_engine(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("sim-a", replicas=2)],
                       health_check_interval=1)
    try:
        r = gw.post("/api/models/sim-a/start?wait=true")
        assert r.status_code == 200, r.text
        detail = gw.get("/api/models/sim-a")
        pids = detail["resource_usage"]["pids"]
        assert len(pids) == 2 and detail["health"] == "healthy"
        os.kill(pids[0], signal.SIGSTOP)  # alive, but answers nothing

        def unhealthy() -> bool:
            return gw.get("/api/models/sim-a")["health"] == "unhealthy"

        wait_until(unhealthy, timeout=15)

        def replaced() -> bool:
            now = gw.get("/api/models/sim-a")["resource_usage"]["pids"]
            return len(now) == 2 and pids[0] not in now

        wait_until(replaced, timeout=30)
        assert gw.info("sim-a")["status"] == "ready"
        wait_until(lambda: gw.get("/api/models/sim-a")["health"] == "healthy", timeout=10)
        lines = [x["message"] for x in gw.get("/api/models/sim-a/logs?lines=300")["logs"]]
        assert any("health check 3/3" in x for x in lines), lines[-20:]
        assert any("stopping unhealthy engine" in x for x in lines)
        _chat(gw, "sim-a")

        # 0 turns the checks off
        assert _put(gw, {"health_check_interval": 0}).status_code == 200
        pids = gw.get("/api/models/sim-a")["resource_usage"]["pids"]
        os.kill(pids[0], signal.SIGSTOP)
        time.sleep(3)
        assert gw.get("/api/models/sim-a")["health"] == "healthy"
        os.kill(pids[0], signal.SIGCONT)
    finally:
        gw.stop()
