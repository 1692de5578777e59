"""``/ws/monitor``: the live feed over a WebSocket (seed 002).

The client may send ``{"action": "subscribe", "events": ["model_status",
"gpu_metrics", "system_alerts", "request_metrics"]}`` (all of them until it does);
the server answers ``{"type": "subscribed", "events": [...], "unknown": [...]}`` and
then sends each event as ``{"type", "data"}``. ``{"action": "ping"}`` gets a
``pong``. Browsers cannot set headers on a WebSocket, so the token may also come
as ``?token=`` (the guard reads it). A client that cannot keep up is disconnected
(close code 1013) rather than slowing anyone down.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from modelfleet.api.core import Core
from modelfleet.observability.feed import Subscriber

router = APIRouter(tags=["live"])

SEND_TIMEOUT_S = 5.0
TRY_AGAIN_LATER = 1013


async def _pump(ws: WebSocket, sub: Subscriber) -> None:
    while True:
        event = await sub.queue.get()
        if event is None:
            await ws.close(code=TRY_AGAIN_LATER, reason="too slow: events were dropped")
            return
        try:
            await asyncio.wait_for(ws.send_json(event), SEND_TIMEOUT_S)
        except TimeoutError:
            await ws.close(code=TRY_AGAIN_LATER, reason="too slow")
            return


def _reply(sub: Subscriber, message: Any) -> None:
    if not isinstance(message, dict):
        event: dict[str, Any] = {"type": "error", "data": {"message": "send a JSON object"}}
    elif message.get("action") == "subscribe" and isinstance(message.get("events"), list):
        events = [str(e) for e in message["events"][:32]]
        unknown = sub.subscribe(events)
        event = {"type": "subscribed", "events": sorted(sub.types), "unknown": unknown}
    elif message.get("action") == "ping":
        event = {"type": "pong"}
    else:
        event = {"type": "error", "data": {"message": "unknown action; use subscribe or ping"}}
    with contextlib.suppress(asyncio.QueueFull):
        sub.queue.put_nowait(event)


@router.websocket("/ws/monitor")
async def monitor(ws: WebSocket) -> None:
    core: Core = ws.app.state.core
    await ws.accept()
    sub = core.feed.join()
    pump = asyncio.create_task(_pump(ws, sub))
    try:
        while not pump.done():
            receive = asyncio.ensure_future(ws.receive_json())
            done, _ = await asyncio.wait({receive, pump}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                break
            _reply(sub, receive.result())
    except (WebSocketDisconnect, ValueError, RuntimeError):
        pass
    finally:
        core.feed.leave(sub)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
