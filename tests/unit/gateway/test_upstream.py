"""The relay's HTTP/1.1 client, against real servers: aiohttp's and hand-written ones."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from modelfleet.gateway.upstream import (
    HIGH_WATER,
    Pool,
    UpstreamClosedError,
    UpstreamConnectError,
    plain_target,
)
from tests.helpers import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"body": body.decode(), "auth": request.headers.get("X-Key"),
                              "peer": request.transport.get_extra_info("peername")[1]
                              if request.transport else None})


async def _sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(3):
        await resp.write(f"data: {i}\n\n".encode())
        await asyncio.sleep(0.02)
    await resp.write_eof()
    return resp


async def _big(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    for _ in range(8):
        await resp.write(b"x" * HIGH_WATER)
    return resp


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_post("/echo", _echo)
    app.router.add_post("/sse", _sse)
    app.router.add_post("/big", _big)
    async with TestServer(app, host="127.0.0.1") as srv:
        yield srv


async def _raw_server(handler: Handler) -> tuple[asyncio.Server, int]:
    port = free_port()
    return await asyncio.start_server(handler, "127.0.0.1", port), port


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    return head + await reader.readexactly(length)


def test_upstream_serves_plain_http_urls_only() -> None:
    assert plain_target("http://127.0.0.1:8001/v1/chat/completions") == (
        "127.0.0.1", 8001, "/v1/chat/completions")
    assert plain_target("http://[::1]:9/v1/x?a=b") == ("::1", 9, "/v1/x?a=b")
    assert plain_target("http://engine-1.local:80/generate") == ("engine-1.local", 80,
                                                                 "/generate")
    for other in ("https://h:1/v1", "http://h/v1", "http://h:1/v1/a b", "http://h:1/v1/é",
                  "http://u@h:1/v1", "unix:/tmp/s.sock"):
        assert plain_target(other) is None, other


async def test_upstream_reuses_one_connection(server: TestServer) -> None:
    pool = Pool(5.0)
    peers = set()
    for i in range(5):
        resp = await pool.request("127.0.0.1", server.port, "/echo", f"b{i}".encode(),
                                  {"X-Key": "k"})
        assert resp.status == 200 and resp.content_type == "application/json"
        answer = (await resp.read()).decode()
        resp.release()
        assert f'"body":"b{i}"' in answer.replace(" ", "") and '"k"' in answer
        peers.add(answer.rsplit(":", 1)[1])
    assert len(peers) == 1  # the same client port every time: kept alive
    pool.close()


async def test_upstream_streams_chunks_as_they_come(server: TestServer) -> None:
    pool = Pool(5.0)
    resp = await pool.request("127.0.0.1", server.port, "/sse", b"{}", {})
    assert resp.content_type == "text/event-stream"
    chunks = []
    while chunk := await resp.content.readany():
        chunks.append(chunk)
    resp.release()
    assert b"".join(chunks) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert len(chunks) == 3  # not buffered into one
    pool.close()


async def test_upstream_pauses_reading_for_a_slow_reader(server: TestServer) -> None:
    pool = Pool(5.0)
    resp = await pool.request("127.0.0.1", server.port, "/big", b"{}", {})
    await asyncio.sleep(0.3)  # the server writes 8 MiB meanwhile; we hold about 1 MiB
    assert resp._buffered <= 3 * HIGH_WATER
    assert len(await resp.read()) == 8 * HIGH_WATER
    resp.release()
    pool.close()


async def test_upstream_refused_connection_is_a_connect_error() -> None:
    with pytest.raises(UpstreamConnectError):
        await Pool(5.0).request("127.0.0.1", free_port(), "/v1", b"{}", {})


async def test_upstream_refuses_header_line_breaks() -> None:
    with pytest.raises(ValueError):
        await Pool(5.0).request("127.0.0.1", 1, "/v1", b"{}", {"Authorization": "a\r\nX: y"})


async def test_upstream_never_sends_a_request_twice() -> None:
    """A kept-alive connection that closes unanswered (the engine may have crashed on the
    request): an error, not a replay on a new connection; retrying is the proxy's call."""
    connections = 0

    async def once_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read(1)  # the next request arrives ...
        writer.close()  # ... and is dropped unanswered

    srv, port = await _raw_server(once_then_drop)
    pool = Pool(5.0)
    async with srv:
        resp = await pool.request("127.0.0.1", port, "/v1", b"{}", {})
        assert await resp.read() == b"ok"
        resp.release()
        with pytest.raises(UpstreamClosedError):
            await pool.request("127.0.0.1", port, "/v1", b"{}", {})
        assert connections == 1
        resp = await pool.request("127.0.0.1", port, "/v1", b"{}", {})  # a new connection
        assert await resp.read() == b"ok"
    assert connections == 2
    pool.close()


async def test_upstream_skips_connections_closed_while_idle() -> None:
    async def answer_then_close(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # its keep-alive ran out

    srv, port = await _raw_server(answer_then_close)
    pool = Pool(5.0)
    async with srv:
        for _ in range(2):
            resp = await pool.request("127.0.0.1", port, "/v1", b"{}", {})
            assert await resp.read() == b"ok"
            resp.release()
            await asyncio.sleep(0.2)
    pool.close()


async def test_upstream_connection_lost_mid_body_raises() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    srv, port = await _raw_server(half)
    async with srv:
        resp = await Pool(5.0).request("127.0.0.1", port, "/v1", b"{}", {})
        with pytest.raises(UpstreamClosedError):
            await resp.read()


async def test_upstream_body_ended_by_the_connection_close() -> None:
    """No length and no chunks: the body is what came before the close (HTTP/1.0 style)."""
    async def unframed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    srv, port = await _raw_server(unframed)
    async with srv:
        resp = await Pool(5.0).request("127.0.0.1", port, "/v1", b"{}", {})
        assert await resp.read() == b"all of it"
        resp.release()


async def test_upstream_garbage_answer_is_a_closed_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    srv, port = await _raw_server(garbage)
    async with srv:
        with pytest.raises(UpstreamClosedError):
            await Pool(5.0).request("127.0.0.1", port, "/v1", b"{}", {})


async def test_upstream_close_tells_the_engine() -> None:
    """Closing a response mid-stream closes its connection (how engines learn to stop)."""
    closed = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await reader.read()  # returns at EOF: the client closed
        closed.set()

    srv, port = await _raw_server(endless)
    pool = Pool(5.0)
    async with srv:
        resp = await pool.request("127.0.0.1", port, "/v1", b"{}", {})
        assert await resp.content.readany() == b"hello"
        resp.close()
        await asyncio.wait_for(closed.wait(), 5)
        assert not pool._idle.get(("127.0.0.1", port))


async def test_upstream_head_and_idle_timeouts() -> None:
    """No head within the timeout: TimeoutError and the connection closed; a body that
    stalls longer than ``idle`` between two arrivals: TimeoutError."""
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader)
        if b"stall-head" in request:
            await reader.read()  # until the client gives up and closes
            return
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
        await writer.drain()
        await reader.read()

    srv, port = await _raw_server(slow)
    pool = Pool(5.0)
    async with srv:
        began = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await pool.request("127.0.0.1", port, "/v1", b"stall-head", {}, timeout=0.2)
        assert asyncio.get_running_loop().time() - began < 2
        resp = await pool.request("127.0.0.1", port, "/v1", b"{}", {}, timeout=5)
        assert await resp.readany(0.2) == b"one"
        with pytest.raises(TimeoutError):
            await resp.readany(0.2)
        resp.close()
    assert not pool._idle.get(("127.0.0.1", port))


async def test_upstream_sends_an_ipv6_host_in_brackets() -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    port = free_port()
    try:
        srv = await asyncio.start_server(record, "::1", port)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with srv:
        resp = await Pool(5.0).request("::1", port, "/v1", b"{}", {})
        assert resp.status == 204 and await resp.read() == b""
    assert f"Host: [::1]:{port}\r\n".encode() in seen[0]
