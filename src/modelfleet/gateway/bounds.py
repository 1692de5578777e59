"""Refuse request fields that would steer where the gateway sends a request.

Proxies that pass a client's ``api_base``, ``base_url`` or ``api_key`` on to
their upstream call have been turned into open relays (SSRF) or made to leak
credentials. No engine of ours reads them, so a body that carries one anywhere
(at any depth, as an object key) is refused with 400. The common case costs
three substring searches of the raw body.
"""

from __future__ import annotations

from typing import Any

from modelfleet.errors import InvalidRequestError

STEERING = ("api_base", "base_url", "api_key")
_MARKERS = tuple(name.encode() for name in STEERING)
MAX_DEPTH = 64


def check_steering(payload: Any, body: bytes | None = None) -> None:
    """400 if ``payload`` (parsed from ``body`` when given) has a steering key."""
    if body is not None and not any(marker in body for marker in _MARKERS):
        return
    path = _find(payload, "", 0)
    if path is not None:
        raise InvalidRequestError(
            f"{path}: the gateway chooses where requests go and with which credentials; "
            "remove this field", param=path, code="FORBIDDEN_PARAMETER")


def _find(value: Any, where: str, depth: int) -> str | None:
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{where}.{key}" if where else str(key)
            if key in STEERING:
                return here
            found = _find(item, here, depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _find(item, f"{where}[{i}]", depth + 1)
            if found:
                return found
    return None
