"""Model logs over HTTP (seeds 002 and 003) against a running gateway (simulator engine)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import Gateway, simulator_model, start_gateway, wait_until

STREAM_TIMEOUT = httpx.Timeout(60, read=60)


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON ``data:`` payloads of an SSE stream (comments skipped)."""
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[len("data: "):])


def _active_streams(gw: Gateway) -> int:
    stats = gw.get("/api/logs/stats")["stats"]
    return int(stats["active_streams"])


def _start_in_thread(gw: Gateway, model: str) -> threading.Thread:
    thread = threading.Thread(target=lambda: gw.post(f"/api/models/{model}/start"), daemon=True)
    thread.start()
    return thread


def test_logs_api(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("sim", aliases=["s"])])
    try:
        # unknown model: 404 with the /api error shape, for every route
        for method, path in [("GET", "/api/models/nope/logs"),
                             ("GET", "/api/v1/models/nope/logs"),
                             ("GET", "/api/models/nope/logs/stream"),
                             ("POST", "/api/logs/nope/clear")]:
            r = httpx.request(method, gw.url + path, timeout=30)
            assert r.status_code == 404, (path, r.text)
            body = r.json()
            assert body["success"] is False and body["message"]
            assert body["error"]["code"] == "MODEL_NOT_FOUND"
        for bad in (0, 10_001, "x"):
            r = httpx.get(gw.url + f"/api/models/sim/logs?lines={bad}", timeout=30)
            assert r.status_code == 422 and r.json()["error"]["param"].endswith("lines"), r.text

        # a stopped model: the stream opens, shows no history, then follows the start
        assert gw.get("/api/models/sim/logs") == {"logs": []}
        seen: list[dict[str, Any]] = []
        with httpx.stream("GET", gw.url + "/api/models/s/logs/stream",
                          timeout=STREAM_TIMEOUT) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = _events(r.iter_lines())
            assert next(events) == {"type": "historical_complete"}
            wait_until(lambda: _active_streams(gw) == 1, timeout=10)
            starter = _start_in_thread(gw, "sim")
            for event in events:
                assert event["type"] == "realtime", event
                assert set(event["log"]) == {"timestamp", "message"}
                assert isinstance(event["log"]["timestamp"], float)
                seen.append(event["log"])
                if " ready in " in event["log"]["message"]:
                    break
            starter.join(30)
        messages = [log["message"] for log in seen]
        assert any("starting sim" in m for m in messages), messages
        assert any("launching" in m for m in messages), messages
        # the client left: its subscription is gone
        wait_until(lambda: _active_streams(gw) == 0, timeout=10)

        # now there is history: historical events first, then historical_complete
        with httpx.stream("GET", gw.url + "/api/models/sim/logs/stream?lines=2",
                          timeout=STREAM_TIMEOUT) as r:
            events = _events(r.iter_lines())
            first = [next(events), next(events), next(events)]
        assert [e["type"] for e in first] == ["historical", "historical", "historical_complete"]
        assert [e["log"]["message"] for e in first[:2]] == messages[-2:]
        wait_until(lambda: _active_streams(gw) == 0, timeout=10)

        # seed 002's JSON, under /api and /api/v1, by name or alias
        for path in ("/api/models/sim/logs?lines=3", "/api/v1/models/s/logs?lines=3"):
            logs = gw.get(path)["logs"]
            assert len(logs) == 3
            for entry in logs:
                assert set(entry) == {"timestamp", "level", "message"}
                assert entry["level"] in ("INFO", "WARNING", "ERROR")
                assert entry["timestamp"].endswith("Z")
                datetime.fromisoformat(entry["timestamp"])
            assert logs[-1]["message"] == messages[-1]
        everything = gw.get("/api/models/sim/logs?lines=10000")["logs"]
        assert len(everything) >= len(messages)

        # follow=true: the same per-line objects as SSE, history then live lines
        with httpx.stream("GET", gw.url + "/api/models/sim/logs?lines=1&follow=true",
                          timeout=STREAM_TIMEOUT) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = _events(r.iter_lines())
            assert next(events)["message"] == messages[-1]
            wait_until(lambda: _active_streams(gw) == 1, timeout=10)
            stopper = threading.Thread(target=lambda: gw.post("/api/models/sim/stop"),
                                       daemon=True)
            stopper.start()
            live = next(events)
            assert set(live) == {"timestamp", "level", "message"}
            assert "stopping sim" in live["message"]
            stopper.join(30)
        wait_until(lambda: _active_streams(gw) == 0, timeout=10)
        wait_until(lambda: gw.info("sim")["status"] == "stopped", timeout=30)

        # stats
        stats = gw.get("/api/logs/stats")
        assert stats["success"] is True
        total = stats["stats"]["total_log_entries"]
        assert stats["stats"]["total_models"] == 1 and stats["stats"]["models_with_logs"] == 1
        assert total == len(gw.get("/api/models/sim/logs?lines=10000")["logs"])

        # clear keeping the last hour deletes nothing (every line is recent)
        r = gw.post("/api/logs/s/clear?keep_minutes=60")
        assert r.status_code == 200 and r.json()["success"] is True
        assert r.json()["message"].endswith("deleted 0")
        assert gw.get("/api/logs/stats")["stats"]["total_log_entries"] == total
        r = gw.post("/api/logs/s/clear?keep_minutes=-1")
        assert r.status_code == 422
    finally:
        gw.stop()

    # the logs survive a gateway restart (same data dir) ...
    gw = start_gateway(tmp_path, [simulator_model("sim", aliases=["s"])])
    try:
        again = gw.get("/api/models/sim/logs?lines=10000")["logs"]
        assert [e["message"] for e in again[:len(everything)]] == [
            e["message"] for e in everything]
        assert any("stopped" in e["message"] for e in again)
        # ... until cleared
        r = gw.post("/api/logs/sim/clear")
        assert r.status_code == 200 and r.json()["success"] is True
        assert r.json()["message"].endswith(f"deleted {len(again)}")
        assert gw.get("/api/models/sim/logs") == {"logs": []}
        stats = gw.get("/api/logs/stats")["stats"]
        assert stats["total_log_entries"] == 0 and stats["models_with_logs"] == 0
    finally:
        gw.stop()

    # and a clear survives a restart too
    gw = start_gateway(tmp_path, [simulator_model("sim", aliases=["s"])])
    try:
        assert gw.get("/api/models/sim/logs") == {"logs": []}
    finally:
        gw.stop()


def test_stream_reports_removed_model(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("sim")])
    try:
        r = httpx.post(gw.url + "/api/models", timeout=30, json={
            "name": "extra", "framework": "simulator", "model": "extra"})
        assert r.status_code == 201, r.text
        with httpx.stream("GET", gw.url + "/api/models/extra/logs/stream",
                          timeout=STREAM_TIMEOUT) as resp:
            events = _events(resp.iter_lines())
            assert next(events) == {"type": "historical_complete"}
            wait_until(lambda: _active_streams(gw) == 1, timeout=10)
            r = httpx.delete(gw.url + "/api/models/extra", timeout=30)
            assert r.status_code == 200, r.text
            rest = list(events)  # the server ends the stream after the error event
        assert rest[-1]["type"] == "error" and "removed" in rest[-1]["message"]
        assert _active_streams(gw) == 0
    finally:
        gw.stop()


def test_stream_ends_with_stream_end_when_the_gateway_stops(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("sim")])
    try:
        with httpx.stream("GET", gw.url + "/api/models/sim/logs/stream",
                          timeout=STREAM_TIMEOUT) as resp:
            events = _events(resp.iter_lines())
            assert next(events) == {"type": "historical_complete"}
            wait_until(lambda: _active_streams(gw) == 1, timeout=10)
            stopper = threading.Thread(target=gw.stop)
            stopper.start()
            rest = list(events)  # ends when the server closes the stream
        stopper.join(30)
        assert rest and rest[-1] == {"type": "stream_end",
                                     "message": "gateway is shutting down"}, rest
        assert gw.proc.returncode is not None
    finally:
        gw.stop()
