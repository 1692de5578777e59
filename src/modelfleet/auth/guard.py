"""The check every HTTP and WebSocket request passes before it is routed.

In order: the size of its headers (431), its Host while the server listens on
loopback only (a page on another site that rebinds its DNS name to 127.0.0.1
would otherwise reach us: 403), then who it is (401) and whether that role
may call the route (403, see ``policy``).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qs

from modelfleet.auth.authenticator import Authenticator, bearer_of
from modelfleet.auth.policy import required_role
from modelfleet.auth.principal import ANONYMOUS, PUBLIC, Principal
from modelfleet.errors import HeadersTooLargeError, PermissionDeniedError
from modelfleet.gateway.asgi import Scope
from modelfleet.settings import Settings

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# How many Host values and (method, path) pairs the guard remembers its answer for: the
# few a server really sees; a flood of odd ones is checked afresh each time.
MEMO = 1024
_UNKNOWN = "?"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """``[::1]:8000`` → ``::1``; ``Example.COM:80`` → ``example.com``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    def __init__(self, settings: Settings, authenticator: Authenticator):
        self.settings = settings
        self.auth = authenticator
        self.max_header_bytes = settings.server.max_header_bytes
        self.check_host = is_loopback(settings.server.host)
        self.hosts = LOCAL_NAMES | {h.lower() for h in settings.server.allowed_hosts}
        self._host_ok: dict[bytes, bool] = {}
        self._roles: dict[tuple[str, str], str | None] = {}

    async def check(self, scope: Scope) -> Principal:
        headers = scope["headers"]
        size = 0
        host = None
        for name, value in headers:
            size += len(name) + len(value)
            if name == b"host":
                host = value
        if size > self.max_header_bytes:
            raise HeadersTooLargeError(
                f"request headers are {size} bytes; at most {self.max_header_bytes} allowed")
        if self.check_host and host is not None and not self._host_allowed(host):
            raise PermissionDeniedError(
                f"host {host_name(host.decode('latin-1'))!r} is not served here (the server "
                "listens on loopback; add it to server.allowed_hosts)", code="HOST_NOT_ALLOWED")
        route = (scope.get("method", "GET"), scope["path"])
        role = self._roles.get(route, _UNKNOWN)
        if role == _UNKNOWN:
            role = required_role(route[0], route[1], self.settings.auth)
            if len(self._roles) < MEMO:
                self._roles[route] = role
        if role is None:
            return PUBLIC if self.auth.enabled else ANONYMOUS
        bearer = bearer_of(headers)
        if bearer is None and scope["type"] == "websocket":
            bearer = _query_token(scope)  # browsers cannot set headers on a WebSocket
        principal = await self.auth.authenticate(bearer)
        if role == "admin" and not principal.is_admin:
            raise PermissionDeniedError("this route needs an admin", code="ADMIN_REQUIRED")
        return principal


    def _host_allowed(self, host: bytes) -> bool:
        allowed = self._host_ok.get(host)
        if allowed is None:
            allowed = host_name(host.decode("latin-1")) in self.hosts
            if len(self._host_ok) < MEMO:
                self._host_ok[host] = allowed
        return allowed


def _query_token(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None
