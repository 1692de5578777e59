"""/ws/monitor against a running gateway: model status events as a model starts and stops,
request figures, authentication, and a slow consumer dropped without slowing the rest."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.helpers import Gateway, simulator_model, start_gateway


def _ws_url(gw: Gateway, query: str = "") -> str:
    return gw.url.replace("http://", "ws://") + "/ws/monitor" + query


async def _next(ws: Any, kind: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        message = json.loads(await asyncio.wait_for(ws.recv(), max(left, 0.01)))
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]


@pytest.fixture
def gw(tmp_path: Path) -> Any:
    gateway = start_gateway(tmp_path, [simulator_model("sim")])
    yield gateway
    gateway.stop()


async def test_status_updates_and_request_metrics(gw: Gateway) -> None:
    async with websockets.connect(_ws_url(gw)) as ws:
        await ws.send(json.dumps({"action": "subscribe",
                                  "events": ["model_status", "request_metrics", "bogus"]}))
        ack = await _next(ws, "subscribed")
        assert "model_status_update" in ack["events"] and ack["unknown"] == ["bogus"]
        await asyncio.to_thread(httpx.post, gw.url + "/api/models/sim/start?wait=true",
                                timeout=60)
        seen = []
        while "ready" not in seen:
            event = await _next(ws, "model_status_update")
            assert event["data"]["model_id"] == "sim" and event["data"]["timestamp"]
            seen.append(event["data"]["status"])
        await asyncio.to_thread(httpx.post, gw.url + "/api/models/sim/stop?wait=true",
                                timeout=60)
        while seen[-1] != "stopped":
            seen.append((await _next(ws, "model_status_update"))["data"]["status"])
        assert "ready" in seen and seen[-1] == "stopped"
        figures = await _next(ws, "request_metrics", timeout=5)
        assert "sim" in figures["data"]["models"]
        await ws.send(json.dumps({"action": "ping"}))
        await _next(ws, "pong")


async def test_a_slow_consumer_is_dropped(gw: Gateway) -> None:
    async with websockets.connect(_ws_url(gw), max_queue=1) as slow, \
            websockets.connect(_ws_url(gw)) as fast:
        await slow.send(json.dumps({"action": "subscribe", "events": ["request_metrics"]}))
        # the slow one never reads again; the fast one keeps receiving meanwhile
        for _ in range(3):
            await _next(fast, "request_metrics", timeout=5)
        started = time.monotonic()
        r = await asyncio.to_thread(httpx.get, gw.url + "/health", timeout=5)
        assert r.status_code == 200 and time.monotonic() - started < 1


async def test_the_feed_needs_a_token_when_auth_is_on(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("sim")],
                       auth={"admin_password": "feed-admin-password"})
    try:
        with pytest.raises(websockets.exceptions.WebSocketException):
            async with websockets.connect(_ws_url(gw)) as ws:
                await ws.recv()
        token = httpx.post(gw.url + "/api/auth/token", timeout=10, json={
            "username": "admin", "password": "feed-admin-password"}).json()["access_token"]
        async with websockets.connect(_ws_url(gw, f"?token={token}")) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            await _next(ws, "pong")
    finally:
        gw.stop()
