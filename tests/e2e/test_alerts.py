"""Alert rules against a running gateway: seed 002's ``/api/config/alerts`` API, an alert
that fires to a real webhook receiver and resolves, and one that was firing when the
gateway died and resolves, once, after it comes back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.helpers import Gateway, simulator_model, start_gateway, wait_until

# Seed 002's example, with a webhook that can be reached here.
SEED_RULE: dict[str, Any] = {
    "name": "高GPU使用率告警",
    "condition": "gpu_utilization > 90",
    "severity": "warning",
    "enabled": True,
    "notification_channels": ["email", "webhook"],
}
BUILTIN_IDS = {"builtin-gpu_utilization_high", "builtin-gpu_temperature_high",
               "builtin-response_time_high", "builtin-error_rate_high"}
FAST = {"alert_interval": 0.5}  # evaluate twice a second


def _api(gw: Gateway, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, gw.url + path, timeout=30, **kw)


class Hooks:
    """A webhook receiver on 127.0.0.1: every POST body, in order."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                hooks.got.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def states(self, alert_id: str | None = None) -> list[str]:
        return [g["state"] for g in self.got
                if alert_id is None or g["alert"]["alert_id"] == alert_id]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    recv = Hooks()
    try:
        yield recv
    finally:
        recv.server.shutdown()


def test_alert_rules_api(tmp_path: Path, hooks: Hooks) -> None:
    """Needs only the router (``/api`` and ``/api/v1``) and the engine in Core."""
    gw = start_gateway(tmp_path, [simulator_model("sim-a")])
    try:
        # the built-in rules, from alert_thresholds, read-only
        rules = _api(gw, "GET", "/api/config/alerts").json()
        builtin = {r["id"]: r for r in rules if r["builtin"]}
        assert set(builtin) == BUILTIN_IDS
        gpu = builtin["builtin-gpu_utilization_high"]
        assert gpu["condition"] == "gpu_utilization > 90" and gpu["threshold"] == 90
        assert gpu["setting"] == "alert_thresholds.gpu_utilization_high"
        assert builtin["builtin-response_time_high"]["metric"] == "latency_p95"
        for method in ("PUT", "DELETE"):
            r = _api(gw, method, "/api/config/alerts/builtin-gpu_utilization_high",
                     json={"enabled": False} if method == "PUT" else None)
            assert r.status_code == 409, r.text
            assert "PUT /api/config" in r.json()["error"]["message"]
        r = _api(gw, "PUT", "/api/config",
                 json={"alert_thresholds": {"gpu_utilization_high": 85}})
        assert r.status_code == 200, r.text
        live = _api(gw, "GET", "/api/v1/config/alerts/builtin-gpu_utilization_high").json()
        assert live["threshold"] == 85 and live["condition"] == "gpu_utilization > 85"

        # seed 002's create example: email is accepted but reported unsupported
        r = _api(gw, "POST", "/api/config/alerts", json={**SEED_RULE, "webhook_url": hooks.url})
        assert r.status_code == 201, r.text
        rule = r.json()
        assert rule["id"].startswith("rule-") and rule["name"] == SEED_RULE["name"]
        assert rule["notification_channels"] == ["email", "webhook"]
        assert rule["channels"][0]["status"] == "unsupported"
        assert any("email" in w for w in rule["warnings"])
        assert (rule["metric"], rule["op"], rule["threshold"]) == ("gpu_utilization", ">", 90)
        listed = _api(gw, "GET", "/api/v1/config/alerts").json()
        assert [r["id"] for r in listed if not r["builtin"]] == [rule["id"]]
        got = _api(gw, "GET", f"/api/config/alerts/{rule['id']}").json()
        assert got["condition"] == "gpu_utilization > 90" and got["channels"] == rule["channels"]

        r = _api(gw, "PUT", f"/api/v1/config/alerts/{rule['id']}",
                 json={"condition": 'ttft_p95{model="sim-a"} > 2s for 1m',
                       "severity": "critical"})
        assert r.status_code == 200, r.text
        changed = r.json()
        assert (changed["model"], changed["for_s"], changed["severity"]) == (
            "sim-a", 60, "critical")
        assert changed["name"] == SEED_RULE["name"]  # fields not sent are kept

        # refusals: 422 naming the field, the position for a condition
        for body, param, words in [
            ({**SEED_RULE, "condition": "gpu_utilisation > 90"}, "condition",
             "did you mean 'gpu_utilization'"),
            ({**SEED_RULE, "condition": "error_rate > 5ms"}, "condition", "position 14"),
            ({**SEED_RULE, "condition": "__import__('os')"}, "condition", "unknown metric"),
            ({**SEED_RULE, "condition": "x" * 10_000}, "condition", "at most 200"),
            ({**SEED_RULE, "severity": "loud"}, "severity", "severity"),
            ({**SEED_RULE, "colour": "red"}, "colour", "colour"),
            ({**SEED_RULE}, "notification_channels[1]", "webhook_url"),
            ({**SEED_RULE, "webhook_url": "file:///etc/passwd"},
             "notification_channels[1].url", "http"),
            ({"condition": "error_rate > 0.1"}, "name", "name"),
        ]:
            r = _api(gw, "POST", "/api/config/alerts", json=body)
            assert r.status_code == 422, (body, r.text)
            err = r.json()["error"]
            assert err["param"] == param and words in err["message"], (param, err)

        r = _api(gw, "DELETE", f"/api/config/alerts/{rule['id']}")
        assert r.status_code == 200 and r.json()["success"] is True
        assert _api(gw, "GET", f"/api/config/alerts/{rule['id']}").status_code == 404
        assert _api(gw, "DELETE", f"/api/config/alerts/{rule['id']}").status_code == 404

        view = _api(gw, "GET", "/api/alerts?limit=5").json()
        assert set(view) == {"active", "history"}
        assert _api(gw, "GET", "/api/alerts?limit=0").status_code == 422
    finally:
        gw.stop()


def _chat(gw: Gateway, model: str) -> None:
    gw.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)


def test_alert_fires_to_webhook_and_resolves(tmp_path: Path, hooks: Hooks) -> None:
    """Needs the engine started with ``alert_interval`` from the settings, and its
    ``active()`` in ``/api/v1/metrics``."""
    gw = start_gateway(tmp_path, [simulator_model("sim-a")], **FAST)
    try:
        r = _api(gw, "POST", "/api/config/alerts", json={
            "name": "sim-a busy", "condition": 'requests_per_second{model="sim-a"} > 0',
            "severity": "info", "notification_channels": ["log", "webhook"],
            "webhook_url": hooks.url})
        assert r.status_code == 201, r.text
        rule = r.json()
        _chat(gw, "sim-a")

        wait_until(lambda: hooks.states(), timeout=20)
        firing = hooks.got[0]
        assert firing["state"] == "firing" and firing["rule"]["id"] == rule["id"]
        alert_id = firing["alert"]["alert_id"]
        assert firing["alert"]["model"] == "sim-a" and firing["alert"]["value"] > 0
        active = _api(gw, "GET", "/api/alerts").json()["active"]
        assert [a["alert_id"] for a in active] == [alert_id]
        metrics = _api(gw, "GET", "/api/v1/metrics").json()
        assert metrics["alerts_count"] == 1 and metrics["alerts"][0]["alert_id"] == alert_id
        status = _api(gw, "GET", f"/api/config/alerts/{rule['id']}").json()["status"]
        assert status["state"] == "firing"

        # a threshold it cannot reach: the alert resolves at the next evaluation
        r = _api(gw, "PUT", f"/api/config/alerts/{rule['id']}",
                 json={"condition": 'requests_per_second{model="sim-a"} > 1000'})
        assert r.status_code == 200, r.text
        wait_until(lambda: hooks.states(alert_id) == ["firing", "resolved"], timeout=20)
        view = _api(gw, "GET", "/api/alerts").json()
        assert view["active"] == []
        assert [(h["alert_id"], h["state"]) for h in view["history"][:2]] == [
            (alert_id, "resolved"), (alert_id, "firing")]
        assert "alert firing: sim-a busy" in gw.log()
    finally:
        gw.stop()


def _kill(gw: Gateway) -> None:
    """Die without shutting down (no resolved events written on the way out)."""
    children = psutil.Process(gw.proc.pid).children(recursive=True)
    gw.proc.kill()
    gw.proc.wait()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def test_firing_alert_resolves_once_after_a_restart(tmp_path: Path, hooks: Hooks) -> None:
    """Needs the same wiring as the test above."""
    slow = simulator_model("sim-a", args={"stall_first_byte_s": 60})
    gw = start_gateway(tmp_path, [slow], **FAST)
    try:
        r = _api(gw, "POST", "/api/config/alerts", json={
            "name": "sim-a running", "condition": 'running_requests{model="sim-a"} > 0',
            "notification_channels": [{"type": "webhook", "url": hooks.url}]})
        assert r.status_code == 201, r.text

        def stalled() -> None:
            try:
                _chat(gw, "sim-a")
            except Exception:
                pass  # the gateway is killed under it

        threading.Thread(target=stalled, daemon=True).start()
        wait_until(lambda: hooks.states(), timeout=30)
        alert_id = hooks.got[0]["alert"]["alert_id"]
    finally:
        _kill(gw)

    gw = start_gateway(tmp_path, [slow], **FAST)  # same data_dir: same store
    try:
        # nothing runs now: the alert from before resolves
        wait_until(lambda: hooks.states(alert_id) == ["firing", "resolved"], timeout=20)
        time.sleep(2)  # several more evaluations: still resolved once
        assert hooks.states(alert_id) == ["firing", "resolved"]
        history = _api(gw, "GET", "/api/alerts").json()["history"]
        assert [(h["alert_id"], h["state"]) for h in history] == [
            (alert_id, "resolved"), (alert_id, "firing")]
    finally:
        gw.stop()
