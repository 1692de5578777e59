"""Small raw-ASGI helpers for the hot path: no framework, no per-request objects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from modelfleet.errors import BodyTooLargeError, FleetError, InvalidJSONError, render_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]


class ClientDisconnected(Exception):
    """The client went away before we answered."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; 413 past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLargeError(f"request body is larger than {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(body: bytes) -> Any:
    if not body:
        raise InvalidJSONError("request body is empty; a JSON object is required")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSONError(f"request body is not valid JSON: {exc}") from None


async def send_bytes(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*(headers or JSON_HEADERS),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any) -> None:
    await send_bytes(send, status, orjson.dumps(payload))


async def send_error(send: Send, exc: FleetError, path: str) -> None:
    status, headers, body = render_error(exc, path)
    await send_bytes(send, status, body, headers)


class SendGuard:
    """Wraps ``send`` to know whether the response began and whether it is complete."""

    __slots__ = ("_send", "started", "finished")

    def __init__(self, send: Send):
        self._send = send
        self.started = False
        self.finished = False

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif not message.get("more_body", False):
            self.finished = True
        await self._send(message)


# How long a request runs before its disconnect watch begins. Most relayed requests are
# over sooner, and a watching task costs more than such a request's whole relay; a
# client that left earlier is noticed when the watch begins (an engine generates for
# at most this much longer).
WATCH_AFTER_S = 0.05


class DisconnectWatch:
    """Cancels ``task`` when the client disconnects before its response is complete.

    Watching (a task waiting on ``receive``) begins ``delay`` seconds after the watch is
    made; ``cancel()`` ends it, begun or not. ``fired`` says whether it cancelled the task.
    """

    __slots__ = ("_receive", "_send", "_task", "_timer", "_watching", "fired")

    def __init__(self, receive: Receive, send: SendGuard, task: asyncio.Task[Any],
                 delay: float = WATCH_AFTER_S):
        self._receive = receive
        self._send = send
        self._task = task
        self._watching: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            delay, self._begin)
        self.fired = False

    def _begin(self) -> None:
        self._timer = None
        self._watching = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if not self._send.finished:
                    self.fired = True
                    self._task.cancel()
                return

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._watching is not None:
            self._watching.cancel()
