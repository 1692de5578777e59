"""A lean HTTP/1.1 client for the relay: keep-alive connections to engines, nothing more.

aiohttp's client does much per request that the relay never uses (cookies,
redirects, tracing, proxies, header multidicts, its own timers); under load it
was the largest item of the gateway's profile. ``Pool`` sends a POST on a pooled
connection, parses the answer with httptools (uvicorn's parser) and hands the
body over as it arrives. ``Relay`` takes it for plain ``http://host:port`` URLs
with ordinary paths; anything else (HTTPS, Unix sockets, other methods) stays on
aiohttp.

Contract:

* ``Pool.request`` returns once the response head arrived. It raises
  ``UpstreamConnectError`` when no connection could be made,
  ``UpstreamClosedError`` when the connection broke before the head, and
  ``TimeoutError`` when the head took longer than ``timeout`` (connecting
  included). Nothing is sent twice: a request whose connection closes before
  the answer may have reached the engine (which may have crashed on it), so
  retrying is the proxy's decision, on another instance. Connections the engine
  closed while idle are dropped before they are reused.
* ``Response.read(idle)`` is the whole body; ``Response.readany(idle)`` (also
  as ``Response.content.readany()``) the bytes that arrived since the last
  call (``b""`` at the end). Either raises ``TimeoutError`` when nothing
  arrives for ``idle`` seconds, and ``UpstreamClosedError`` when the
  connection breaks mid-body. Timeouts are timers on the waiting future, not
  ``asyncio.timeout`` blocks: they cost a fraction as much, on every request.
* ``release()`` gives a completely read response's connection back to the pool
  (anything else is closed); ``close()`` closes the connection at once, which is
  how an engine learns that the client left.

The body is buffered up to ``HIGH_WATER`` bytes before reading from the engine
pauses, so a slow client holds the engine back instead of our memory.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from typing import Any

import httptools

HIGH_WATER = 1 << 20
MAX_IDLE_PER_HOST = 512
_PLAIN_URL = re.compile(r"^http://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})"
                        r"(/[A-Za-z0-9/._~\-]*(?:\?[\x21-\x7e]*)?)$")


class UpstreamError(OSError):
    """The engine's connection failed; the subclasses say when."""


class UpstreamConnectError(UpstreamError):
    """No connection could be made (refused, unreachable, timed out)."""

    def __init__(self, message: str, strerror: str | None = None):
        super().__init__(message)
        self.strerror = strerror or message


class UpstreamClosedError(UpstreamError):
    """The connection closed, or the answer was not HTTP, before the response ended."""


def plain_target(url: str) -> tuple[str, int, str] | None:
    """``(host, port, path)`` of a URL this client serves, else None (aiohttp's)."""
    if url in _targets:
        return _targets[url]
    match = _PLAIN_URL.match(url)
    target = None
    if match is not None:
        host, port, path = match.groups()
        target = host.strip("[]"), int(port), path
    if len(_targets) >= 1024:  # a few engines and routes in practice; stay bounded
        _targets.clear()
    _targets[url] = target
    return target


_targets: dict[str, tuple[str, int, str] | None] = {}


class Headers:
    """The response's headers: ``items()`` and case-insensitive ``get()``, as aiohttp's."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]):
        self.raw = raw  # (lower-case name, value) as received

    def get(self, name: str, default: str = "") -> str:
        key = name.lower().encode()
        for k, v in self.raw:
            if k == key:
                return v.decode("latin-1")
        return default

    def items(self) -> list[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw]


class Response:
    """One answer, its body arriving on its connection."""

    __slots__ = ("status", "headers", "_conn", "_chunks", "_buffered", "_waiter", "_done",
                 "_exc", "_keep_alive", "_content_type")

    def __init__(self, conn: _Connection):
        self.status = 0
        self.headers = Headers([])
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._done = False
        self._exc: BaseException | None = None
        self._keep_alive = False
        self._content_type: str | None = None

    @property
    def content(self) -> Response:
        return self  # aiohttp reads streams through ``resp.content.readany()``

    @property
    def content_type(self) -> str:
        if self._content_type is None:
            value = self.headers.get("content-type", "application/octet-stream")
            self._content_type = value.partition(";")[0].strip().lower()
        return self._content_type

    async def read(self, idle: float | None = None) -> bytes:
        while not self._done:
            self._conn.resume()  # the whole body is wanted: no point holding the engine
            await self._wait(idle)
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return data

    async def readany(self, idle: float | None = None) -> bytes:
        while not self._chunks and not self._done:
            await self._wait(idle)
        if not self._chunks:
            return b""
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._conn.resume()
        return data

    def release(self) -> None:
        """Back to the pool when read to the end and the engine keeps the connection."""
        if self._done and self._exc is None and self._keep_alive:
            self._conn.idle()
        else:
            self._conn.close()

    def close(self) -> None:
        self._conn.close()

    async def _wait(self, timeout: float | None) -> None:
        if self._exc is not None:
            raise self._exc
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if self._exc is not None and not self._done:
            raise self._exc

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER:
            self._conn.pause()
        self._wake()

    def _finish(self, keep_alive: bool) -> None:
        self._done = True
        self._keep_alive = keep_alive
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if not self._done:
            self._exc = exc
            self._wake()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; it carries one request at a time."""

    def __init__(self, pool: Pool, key: tuple[str, int]):
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.head: asyncio.Future[Response] | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # bytes nobody asked for: the connection is not usable
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamClosedError(f"the engine's answer is not valid HTTP: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and response.status and not _framed(response.headers):
            response._finish(keep_alive=False)  # a body that ends when the connection does
        self._fail(UpstreamClosedError(f"the engine closed the connection"
                                       f"{': ' + str(exc) if exc else ''}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.headers.raw.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status = self.parser.get_status_code()
        if self.head is not None and not self.head.done():
            self.head.set_result(response)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        response._finish(self.parser.should_keep_alive())

    # ours
    def send(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.response = Response(self)
        self.head = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.head

    def idle(self) -> None:
        """The response is over: wait in the pool for the next request."""
        self.response = None
        self.head = None
        self.parser = httptools.HttpResponseParser(self)
        self.resume()
        self.pool.put(self)

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self._fail(UpstreamClosedError("the connection was closed"))

    def _fail(self, exc: UpstreamClosedError) -> None:
        if self.head is not None and not self.head.done():
            self.head.set_exception(exc)
        if self.response is not None:
            self.response._fail(exc)


class Pool:
    """Keep-alive connections by (host, port); idle ones close after ``keepalive_s``."""

    def __init__(self, connect_timeout: float, keepalive_s: float = 30.0):
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def request(self, host: str, port: int, path: str, body: bytes,
                      headers: dict[str, str], timeout: float | None = None) -> Response:
        """POST ``body`` to ``path`` on ``host:port``; the response once its head arrived
        (within ``timeout`` s, connecting included)."""
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 bracketed
        lines = [f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n"
                 f"Content-Length: {len(body)}\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name} holds a line break")
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1") + body
        key = (host, port)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        conn = self._take(key) or await self._connect(key, deadline)
        head = conn.send(data)
        timer = None if deadline is None else loop.call_at(deadline, _expire, head)
        try:
            return await head
        except BaseException:  # closed, timed out, cancelled: the connection is done
            conn.close()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def put(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= MAX_IDLE_PER_HOST:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest = time.monotonic() - self.keepalive_s
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.idle_since >= oldest and conn.transport is not None \
                    and not conn.transport.is_closing():
                return conn
            conn.close()
        return None

    async def _connect(self, key: tuple[str, int], deadline: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self, key)
        limit = loop.time() + self.connect_timeout
        try:
            async with asyncio.timeout_at(limit if deadline is None else min(limit, deadline)):
                await loop.create_connection(lambda: conn, key[0], key[1])
        except TimeoutError:
            raise  # as aiohttp's connect timeout: the relay counts it against the first byte
        except OSError as exc:
            raise UpstreamConnectError(str(exc), exc.strerror) from None
        return conn

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

    def stats(self) -> dict[str, Any]:
        return {f"{h}:{p}": len(c) for (h, p), c in self._idle.items()}


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _framed(headers: Headers) -> bool:
    """Whether the body's end is marked (a length, or chunks), not the connection's close."""
    return any(k in (b"content-length", b"transfer-encoding") for k, _ in headers.raw)
