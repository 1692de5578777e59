"""http(s) media over real sockets: public addresses only, checked hops, capped bodies."""

import asyncio
import io
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from modelfleet.errors import (
    BodyTooLargeError,
    FleetError,
    InvalidRequestError,
    PermissionDeniedError,
)
from modelfleet.gateway.media import inline_media
from modelfleet.gateway.media_http import (
    CheckingResolver,
    MediaFetcher,
    address_refusal,
    host_allowed,
)
from modelfleet.settings import MediaSettings


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 3), "blue").save(out, format="PNG")
    return out.getvalue()


PNG = _png()
MAX = 10_000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Host:
    """An image host on 127.0.0.1 that counts the requests it gets."""

    def __init__(self) -> None:
        self.hits = 0
        self.app = web.Application(middlewares=[self._count])
        self.server = TestServer(self.app, host="127.0.0.1")

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.hits += 1
        return await handler(request)

    def url(self, path: str, host: str = "localhost") -> str:
        return f"http://{host}:{self.server.port}{path}"


def _reply(body: bytes, content_type: str) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type)
    return handler


def _redirect(location: str) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(location)
    return handler


async def _trickle(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    await resp.prepare(request)
    for byte in PNG[:20]:
        await resp.write(bytes([byte]))
        await asyncio.sleep(0.5)
    return resp


async def _declared_big(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    resp.content_length = 10**9
    await resp.prepare(request)
    await resp.write(PNG)
    await asyncio.sleep(30)  # never sends the rest: only the header can refuse it at once
    return resp


async def _chunked_big(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(4):
        await resp.write(b"\0" * (MAX // 2))
    return resp


@pytest.fixture()
async def host() -> AsyncIterator[Host]:
    h = Host()
    r = h.app.router
    r.add_get("/img.png", _reply(PNG, "image/png"))
    r.add_get("/untyped", _reply(PNG, "application/octet-stream"))
    r.add_get("/page", _reply(b"<html></html>", "text/html"))
    r.add_get("/fake.png", _reply(b"GIF89 nope", "image/png"))
    r.add_get("/big", _reply(b"\0" * (MAX + 1), "image/png"))
    r.add_get("/chunked", _chunked_big)
    r.add_get("/declared", _declared_big)
    r.add_get("/trickle", _trickle)
    r.add_get("/loop", _redirect("/loop"))
    r.add_get("/to-img", _redirect("/img.png"))
    r.add_get("/to-metadata",
              _redirect("http://169.254.169.254/latest/meta-data/"))
    r.add_get("/to-file", _redirect("file:///etc/passwd"))
    await h.server.start_server()
    yield h
    await h.server.close()


@pytest.fixture()
async def fetcher_for() -> AsyncIterator[Callable[..., MediaFetcher]]:
    made: list[MediaFetcher] = []

    def make(**settings: Any) -> MediaFetcher:
        f = MediaFetcher(MediaSettings(**{"max_bytes": MAX, **settings}))
        made.append(f)
        return f

    yield make
    for f in made:
        await f.close()


async def _fails(fetcher: MediaFetcher, url: str, kind: type[FleetError], code: str) -> FleetError:
    with pytest.raises(kind) as info:
        await fetcher.fetch(url)
    assert info.value.code == code, info.value.message
    return info.value


async def test_fetch_returns_the_image_of_an_allowed_host(host: Host, fetcher_for: Any) -> None:
    fetcher = fetcher_for(allowed_domains=["localhost"])
    assert await fetcher.fetch(host.url("/img.png")) == PNG
    assert await fetcher.fetch(host.url("/to-img")) == PNG
    assert await fetcher.fetch(host.url("/untyped")) == PNG
    # Literal IPs may be listed too.
    assert await fetcher_for(allowed_domains=["127.0.0.1"]).fetch(
        host.url("/img.png", "127.0.0.1")) == PNG


async def test_inline_media_inlines_an_http_image(host: Host, fetcher_for: Any) -> None:
    media = MediaSettings(allowed_domains=["*.localhost", "localhost"])
    payload: dict[str, Any] = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": host.url("/img.png")}]}]}
    assert await inline_media(payload, media, fetcher_for(**media.model_dump()))
    part = payload["messages"][0]["content"][0]
    assert part["image_url"]["url"].startswith("data:image/png;base64,")


async def test_inline_media_fetches_a_few_images_at_a_time(fetcher_for: Any) -> None:
    h = Host()
    in_flight, peak = 0, 0

    async def slow(_: web.Request) -> web.StreamResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return web.Response(body=PNG, content_type="image/png")

    h.app.router.add_get("/slow", slow)
    await h.server.start_server()
    try:
        # Two names for the host, so that the connector's per-host limit is not what binds.
        media = MediaSettings(allowed_domains=["localhost", "127.0.0.1"])
        names = ["localhost", "127.0.0.1"]
        parts = [{"type": "image_url", "image_url": {"url": h.url(f"/slow?{i}", names[i % 2])}}
                 for i in range(12)]
        payload = {"messages": [{"role": "user", "content": parts}]}
        assert await inline_media(payload, media, fetcher_for(**media.model_dump()))
    finally:
        await h.server.close()
    assert h.hits == 12 and 1 < peak <= 4


async def test_fetch_ignores_proxy_variables(host: Host, fetcher_for: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = Host()
    await proxy.server.start_server()
    try:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url("/", "127.0.0.1"))
        fetcher = fetcher_for(allowed_domains=["localhost"])
        assert await fetcher.fetch(host.url("/img.png")) == PNG
    finally:
        await proxy.server.close()
    assert proxy.hits == 0 and host.hits == 1


async def test_fetch_refuses_loopback_without_connecting(host: Host, fetcher_for: Any) -> None:
    fetcher = fetcher_for()
    for spelling in ("localhost", "127.0.0.1", "[::1]", "2130706433", "0x7f.0.0.1",
                     "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]"):
        err = await _fails(fetcher, host.url("/img.png", spelling),
                           PermissionDeniedError, "MEDIA_FORBIDDEN")
        assert err.status == 403
    assert host.hits == 0


async def test_fetch_checks_every_redirect(host: Host, fetcher_for: Any) -> None:
    fetcher = fetcher_for(allowed_domains=["localhost"], fetch_timeout_s=30)
    started = time.monotonic()
    await _fails(fetcher, host.url("/to-metadata"), PermissionDeniedError, "MEDIA_FORBIDDEN")
    # A connection attempt to the metadata address would hang here, not answer at once.
    assert time.monotonic() - started < 2
    await _fails(fetcher, host.url("/to-file"), PermissionDeniedError, "MEDIA_FORBIDDEN")
    # An allowed host redirecting to another by its IP, which is not allowed: never contacted.
    async with _redirecting(host.url("/img.png", "127.0.0.1")) as url:
        await _fails(fetcher, url, PermissionDeniedError, "MEDIA_FORBIDDEN")
    assert host.hits == 2  # /to-metadata and /to-file only


class _redirecting:
    """A one-route host on localhost that redirects to ``target``."""

    def __init__(self, target: str) -> None:
        self.host = Host()
        self.host.app.router.add_get("/", _redirect(target))

    async def __aenter__(self) -> str:
        await self.host.server.start_server()
        return self.host.url("/")

    async def __aexit__(self, *exc: object) -> None:
        await self.host.server.close()


async def test_fetch_stops_after_max_redirects(host: Host, fetcher_for: Any) -> None:
    fetcher = fetcher_for(allowed_domains=["localhost"], max_redirects=3)
    err = await _fails(fetcher, host.url("/loop"), InvalidRequestError, "MEDIA_FETCH_FAILED")
    assert err.status == 400 and "redirects" in err.message
    assert host.hits == 4


async def test_fetch_caps_the_body(host: Host, fetcher_for: Any) -> None:
    fetcher = fetcher_for(allowed_domains=["localhost"], fetch_timeout_s=5)
    for path in ("/big", "/chunked", "/declared"):
        started = time.monotonic()
        err = await _fails(fetcher, host.url(path), BodyTooLargeError, "MEDIA_TOO_LARGE")
        assert err.status == 413 and time.monotonic() - started < 2


async def test_fetch_cuts_off_a_trickling_host(host: Host, fetcher_for: Any) -> None:
    fetcher = fetcher_for(allowed_domains=["localhost"], fetch_timeout_s=1)
    started = time.monotonic()
    err = await _fails(fetcher, host.url("/trickle"), InvalidRequestError, "INVALID_MEDIA")
    assert 0.9 < time.monotonic() - started < 3
    assert err.status == 400 and "timed out" in err.message


async def test_fetch_refuses_non_images_and_errors(host: Host, fetcher_for: Any) -> None:
    fetcher = fetcher_for(allowed_domains=["localhost"])
    await _fails(fetcher, host.url("/page"), InvalidRequestError, "INVALID_MEDIA")
    err = await _fails(fetcher, host.url("/missing"), InvalidRequestError, "MEDIA_FETCH_FAILED")
    assert "404" in err.message
    media = MediaSettings(allowed_domains=["localhost"])
    payload: dict[str, Any] = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": host.url("/fake.png")}}]}]}
    with pytest.raises(InvalidRequestError) as info:
        await inline_media(payload, media, fetcher)
    assert info.value.code == "INVALID_MEDIA"
    assert info.value.param == "messages[0].content[0].image_url"


async def test_fetch_reports_an_unreachable_host(fetcher_for: Any) -> None:
    fetcher = fetcher_for(allowed_domains=["localhost"])
    await _fails(fetcher, "http://localhost:1/img.png", InvalidRequestError, "MEDIA_FETCH_FAILED")
    await _fails(fetcher, "http://user:pw@localhost:1/", InvalidRequestError, "INVALID_MEDIA")


async def test_resolver_refuses_names_of_private_addresses() -> None:
    with pytest.raises(PermissionDeniedError):
        await CheckingResolver([]).resolve("localhost", 80, socket.AF_UNSPEC)
    results = await CheckingResolver(["localhost"]).resolve("localhost", 80, socket.AF_UNSPEC)
    assert results and all(ipaddress.ip_address(r["host"]).is_loopback for r in results)
    assert all(r["hostname"] == "localhost" and r["port"] == 80 for r in results)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111",
                                     "2001:4860:4860::8888", "::ffff:8.8.8.8",
                                     "2002:808:808::1"])
def test_address_refusal_allows_public_addresses(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.255.0.9", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255",
    "192.168.1.1", "169.254.1.1", "169.254.169.254", "100.64.0.1", "100.100.100.200",
    "192.0.0.192", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "198.18.0.1", "192.0.2.1", "::1", "::", "fc00::1", "fd00:ec2::254", "fe80::1",
    "ff02::1", "fec0::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "2002:7f00:1::1", "2002:a00:1::1", "::127.0.0.1",
    "2001:db8::1",
])
def test_address_refusal_refuses_non_public_addresses(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is not None


def test_host_allowed_matches_names_and_suffix_patterns() -> None:
    patterns = ["images.example.com", "*.cdn.example.org"]
    assert host_allowed("images.example.com", patterns)
    assert host_allowed("IMAGES.example.com.", patterns)
    assert host_allowed("a.b.cdn.example.org", patterns)
    assert not host_allowed("cdn.example.org", patterns)
    assert not host_allowed("evilcdn.example.org", patterns)
    assert not host_allowed("images.example.com.evil.net", patterns)
