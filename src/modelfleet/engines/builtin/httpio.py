"""Request bodies in, JSON and server-sent events out, and noticing a client that left.

uvicorn does not fail ``send`` once a client has disconnected (it drops the bytes), so a
stream cannot learn of the disconnect by writing; both the streaming and the
non-streaming paths therefore watch ``receive`` for ``http.disconnect`` while they work,
and cancel the request's generation as soon as it arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from modelfleet.engines.builtin.config import MAX_BODY_BYTES
from modelfleet.errors import BodyTooLargeError, InvalidJSONError, InvalidRequestError

log = logging.getLogger("modelfleet.engines.builtin")


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``limit`` bytes, 400 when it is not an object."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLargeError(f"request body is larger than {limit} bytes")
    if not body:
        raise InvalidRequestError("request body is empty; a JSON object is expected")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSONError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return data


class JSONResponse(Response):
    """A JSON response serialised by orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def sse(obj: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``obj``."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


async def watch_disconnect(receive: Receive, on_disconnect: Callable[[], None]) -> None:
    """Call ``on_disconnect`` when the client goes away (run as a task; cancel it when
    the response is complete). Only valid once the request body has been read."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            on_disconnect()
            return


async def await_or_disconnect(
    request: Request, work: asyncio.Future[Any], on_disconnect: Callable[[], None]
) -> Any:
    """Await ``work`` while watching the connection; ``on_disconnect`` runs (once) if the
    client leaves first, and ``work`` is still awaited so the request ends cleanly."""
    watcher = asyncio.create_task(watch_disconnect(request.receive, on_disconnect))
    try:
        return await work
    finally:
        watcher.cancel()


class EventStreamResponse(Response):
    """``text/event-stream`` of the byte chunks ``events`` yields.

    While streaming it watches for the client's disconnect; whether the stream ends
    normally, by disconnect, or by cancellation (server shutdown), ``on_close`` runs, so
    the request's generation is always stopped, and ``events`` is closed.
    """

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], on_close: Callable[[], None]):
        # Response.__init__ is skipped on purpose: it would add "content-length: 0".
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self.events = events
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        def disconnected() -> None:
            gone.set()
            self.on_close()

        watcher = asyncio.create_task(watch_disconnect(receive, disconnected))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for chunk in self.events:
                if gone.is_set():
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            # Some servers do raise on a closed socket; same meaning as a disconnect.
            pass
        finally:
            watcher.cancel()
            self.on_close()
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                await aclose()
