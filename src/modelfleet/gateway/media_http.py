"""``http(s)://`` media: fetch an image without letting a client reach private networks.

A host may only be contacted on public addresses, unless its name is listed in
``media.allowed_domains``. The check lives in the DNS resolver the fetcher's session
connects through (``CheckingResolver``): it resolves, checks every address and hands
the connector exactly the addresses it checked, so a name cannot resolve to a public
address for the check and a private one for the connection. aiohttp skips the
resolver for literal IP hosts, so those (in every spelling ``getaddrinfo`` accepts,
``2130706433`` and ``0x7f.1`` among them) are checked before each request.

Redirects are followed by hand, at most ``max_redirects``, each hop checked again.
The body is capped at ``max_bytes`` while it streams and the whole fetch, redirects
included, at ``fetch_timeout_s``. No proxy from the environment, no cookies, no
content decoding (a compressed body could expand past the cap).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from modelfleet.errors import BodyTooLargeError, InvalidRequestError, PermissionDeniedError
from modelfleet.settings import MediaSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
# Ranges ``ipaddress``'s flags miss or that differ between Python versions.
_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "224.0.0.0/4",
        "240.0.0.0/4", "::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fec0::/10",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_OCTET_STREAMS = frozenset({"application/octet-stream", "binary/octet-stream"})
_HEADERS = {"User-Agent": "modelfleet-media", "Accept": "image/*", "Accept-Encoding": "identity"}


def address_refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be contacted (``"loopback"``, ``"private"``, ...), or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        # Addresses that carry an IPv4 address are judged by it.
        if ip.ipv4_mapped is not None:
            return address_refusal(ip.ipv4_mapped)
        if ip in _NAT64:
            return address_refusal(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and address_refusal(ip.sixtofour):
            return "6to4 non-public"
    if ip in _METADATA:
        return "cloud metadata"
    for flag in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{flag}"):
            return flag.replace("_", "-")
    if any(ip in net for net in _BLOCKED) or not ip.is_global:
        return "non-public"
    return None


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """Whether ``host`` equals a pattern or, for ``*.example.com``, lies below it."""
    name = host.rstrip(".").lower().strip("[]")
    for pattern in patterns:
        pattern = pattern.rstrip(".").lower().strip("[]")
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]):
                return True
        elif name == pattern:
            return True
    return False


def _forbidden(message: str) -> PermissionDeniedError:
    return PermissionDeniedError(message, code="MEDIA_FORBIDDEN")


def _fetch_failed(message: str) -> InvalidRequestError:
    return InvalidRequestError(message, code="MEDIA_FETCH_FAILED")


def check_addresses(host: str, addresses: Iterable[str], allowed_domains: Iterable[str]) -> None:
    """Raise 403 ``MEDIA_FORBIDDEN`` unless every address is public or ``host`` is allowed."""
    if host_allowed(host, allowed_domains):
        return
    for address in addresses:
        reason = address_refusal(ipaddress.ip_address(address))
        if reason:
            raise _forbidden(f"media host {host!r} is not allowed: it is or resolves to a "
                             f"{reason} address (see media.allowed_domains)")


class CheckingResolver(AbstractResolver):
    """Resolves with ``getaddrinfo`` and returns only addresses that passed the check."""

    def __init__(self, allowed_domains: Iterable[str]) -> None:
        self._allowed = tuple(allowed_domains)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Every address of ``host``; raises PermissionDeniedError if any is refused."""
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, family=family
        )
        check_addresses(host, (str(info[4][0]) for info in infos), self._allowed)
        return [
            ResolveResult(
                hostname=host,
                host=str(sockaddr[0]),
                port=int(sockaddr[1]),
                family=fam,
                proto=proto,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for fam, _, proto, _, sockaddr in infos
        ]

    async def close(self) -> None:
        """Nothing to release."""


def _check_url(url: URL, allowed_domains: Iterable[str]) -> None:
    """The scheme, host and, for a literal IP in any spelling, the address of one hop."""
    if url.scheme not in ("http", "https"):
        raise _forbidden(f"media redirects may only lead to http(s) URLs, not {url.scheme}:")
    if not url.raw_host:
        raise InvalidRequestError("the media URL has no host", code="INVALID_MEDIA")
    if url.raw_user is not None or url.raw_password is not None:
        raise InvalidRequestError("media URLs may not carry credentials", code="INVALID_MEDIA")
    host = url.host or url.raw_host
    try:
        # Numeric hosts only (no DNS here): whatever the connection would use.
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM,
                                   flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return  # a name: CheckingResolver judges it when the connection is made
    check_addresses(host, (str(info[4][0]) for info in infos), allowed_domains)


def _parse(url: str) -> URL:
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise InvalidRequestError("the media URL is malformed", code="INVALID_MEDIA") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidRequestError("not an http(s) URL", code="INVALID_MEDIA")
    return parsed


class MediaFetcher:
    """Fetches images over http(s) through one session of its own; ``close()`` ends it.

    The session is created on first use (it needs the running loop), connects through
    ``CheckingResolver``, ignores proxy variables and keeps no cookies.
    """

    def __init__(self, media: MediaSettings) -> None:
        self._media = media
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=CheckingResolver(self._media.allowed_domains),
                use_dns_cache=False,
                limit=16,
                limit_per_host=4,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str) -> bytes:
        """The body of ``url`` after at most ``max_redirects`` checked redirects.

        Raises PermissionDeniedError (403 ``MEDIA_FORBIDDEN``) for a refused address or a
        redirect off http(s); InvalidRequestError (400) ``INVALID_MEDIA`` for a malformed
        URL, a non-image content type, or a fetch past ``fetch_timeout_s`` ("timed out"),
        and ``MEDIA_FETCH_FAILED`` for connection failures, non-200 answers and too many
        redirects; BodyTooLargeError (413 ``MEDIA_TOO_LARGE``) past ``max_bytes``.
        """
        target = _parse(url)
        timeout = self._media.fetch_timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(target)
        except TimeoutError:
            raise InvalidRequestError(
                f"fetching the image from {target.host} timed out after {timeout:g} s",
                code="INVALID_MEDIA",
            ) from None
        except aiohttp.ClientError as exc:
            raise _fetch_failed(
                f"could not fetch the image from {target.host}: {type(exc).__name__}"
            ) from None

    async def _follow(self, target: URL) -> bytes:
        session = self._get_session()
        for _ in range(self._media.max_redirects + 1):
            _check_url(target, self._media.allowed_domains)
            async with session.get(target, allow_redirects=False, headers=_HEADERS) as resp:
                if resp.status in _REDIRECTS:
                    target = self._next_hop(resp)
                    continue
                if resp.status != 200:
                    raise _fetch_failed(f"the image host answered HTTP {resp.status}")
                self._check_head(resp)
                return await self._read(resp)
        raise _fetch_failed(f"more than {self._media.max_redirects} redirects")

    @staticmethod
    def _next_hop(resp: aiohttp.ClientResponse) -> URL:
        location = resp.headers.get("Location")
        if not location:
            raise _fetch_failed("the image host redirected without a Location")
        try:
            return resp.url.join(URL(location))
        except (ValueError, TypeError):
            raise _fetch_failed("the image host redirected to a malformed URL") from None

    def _check_head(self, resp: aiohttp.ClientResponse) -> None:
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            raise InvalidRequestError(f"the image host sent a {encoding}-encoded body",
                                      code="INVALID_MEDIA")
        ctype = resp.content_type.lower()
        # No or a generic type: the caller's image check decides.
        if not ctype.startswith("image/") and ctype not in _OCTET_STREAMS:
            raise InvalidRequestError(f"the URL holds {ctype}, not an image",
                                      code="INVALID_MEDIA")
        length = resp.content_length
        if length is not None and length > self._media.max_bytes:
            raise self._too_large()

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        body = bytearray()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > self._media.max_bytes:
                raise self._too_large()
        return bytes(body)

    def _too_large(self) -> BodyTooLargeError:
        return BodyTooLargeError(
            f"the image is larger than the media limit of {self._media.max_bytes} bytes",
            code="MEDIA_TOO_LARGE",
        )
