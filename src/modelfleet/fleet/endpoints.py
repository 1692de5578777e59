"""Instance addresses and role layouts of disaggregated serving.

An address names an engine started by hand (``ModelConfig.endpoints``, seed 000's
``--encode-addr-list`` and friends)::

    http://host:port, https://host:port   as written (a trailing /v1 is dropped)
    host:port                             http://host:port
    /abs/path, unix:/abs/path,            a Unix socket; shown as ipc:///abs/path,
    ipc:///abs/path                       as seed 000 shows it

A socket's requests go through a session of its own (``unix_session``): aiohttp
binds a connector to one socket path. Its ``base_url`` is a made-up host unique to
the path, so everything that tells instances apart by ``base_url`` (routing, the
request records, health) still can, and nothing ever resolves that name.

A layout is the number of instances per role. Roles: ``pd`` (a whole engine),
``encode`` (media only), ``prefill`` and ``decode`` (the two halves of P/D
disaggregation). ``check_layout`` states what makes one servable.

This module is pure: settings validate with it, so it imports no other module of
ours and aiohttp only when a session is made.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

ROLES = ("pd", "encode", "prefill", "decode")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")
_URL = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:\d{1,5})?(/[^\s?#]*)?$")
_SOCKET_PREFIXES = ("ipc://", "unix://", "unix:")


@dataclass(frozen=True, slots=True)
class Address:
    """Where an instance listens: the URL requests start with, and how it is shown."""

    base_url: str
    display: str
    uds: str | None = None  # the socket path, for a Unix socket


def parse_address(text: str) -> Address:
    """Parse one endpoint address; ValueError says what is wrong with it."""
    text = text.strip()
    for prefix in _SOCKET_PREFIXES:
        if text.startswith(prefix):
            return _socket(text[len(prefix):], text)
    if text.startswith("/"):
        return _socket(text, text)
    if text.startswith(("http://", "https://")):
        if not _URL.match(text):
            raise ValueError(f"address {text!r} is not an http(s)://host:port URL")
        url = text.rstrip("/")
        url = url.removesuffix("/v1")
        return Address(base_url=url, display=url)
    match = _HOST_PORT.match(text)
    if match is None:
        raise ValueError(f"address {text!r} is not http(s)://host:port, host:port, or a "
                         "Unix socket (/path, unix:/path, ipc:///path)")
    if not 0 < int(match["port"]) < 65536:
        raise ValueError(f"address {text!r}: port out of range")
    url = f"http://{text}"
    return Address(base_url=url, display=url)


def _socket(path: str, text: str) -> Address:
    if not path.startswith("/") or "\x00" in path or len(path) > 107:
        # 107: the longest path a sockaddr_un holds on Linux.
        raise ValueError(f"Unix socket address {text!r} needs an absolute path (at most "
                         "107 bytes)")
    digest = hashlib.blake2b(path.encode(), digest_size=6).hexdigest()
    return Address(base_url=f"http://uds-{digest}.localhost", display=f"ipc://{path}",
                   uds=path)


def unix_session(path: str, like: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """A pooled session to the Unix socket ``path``, with ``like``'s timeouts and habits
    (no decompression, no automatic headers): the relay's TCP session, for a socket."""
    import aiohttp

    connector = aiohttp.UnixConnector(path=path, limit=0, keepalive_timeout=30)
    return aiohttp.ClientSession(connector=connector, timeout=like.timeout,
                                 auto_decompress=False,
                                 skip_auto_headers=("User-Agent", "Accept-Encoding"),
                                 json_serialize=like.json_serialize)


def layout_of(replicas: int, roles: Mapping[Any, int] | None,
              endpoint_roles: Iterable[str] = ()) -> dict[str, int]:
    """Instances per role: the endpoints' roles, else ``roles``, else ``replicas`` × pd.
    Roles with no instance are left out."""
    listed = Counter(endpoint_roles)
    if listed:
        return dict(listed)
    if roles is not None:
        return {role: count for role, count in roles.items() if count > 0}
    return {"pd": replicas}


def check_layout(layout: Mapping[str, int]) -> None:
    """ValueError unless the layout can serve a request: something generates (pd or
    decode); prefill and decode come together and never beside pd (a request goes to a
    pd instance or through prefill then decode, not either); encode needs something
    to hand its output to."""
    has = {role for role, count in layout.items() if count > 0}
    unknown = has - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; roles are {', '.join(ROLES)}")
    if not has & {"pd", "decode"}:
        raise ValueError("a model needs at least one pd or decode instance")
    if "decode" in has and "prefill" not in has:
        raise ValueError("decode instances need prefill instances (P/D disaggregation)")
    if "prefill" in has and "decode" not in has:
        raise ValueError("prefill instances need decode instances (P/D disaggregation)")
    if "pd" in has and "prefill" in has:
        raise ValueError("pd instances cannot be combined with prefill/decode instances")
