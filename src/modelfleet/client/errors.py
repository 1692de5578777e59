"""The exceptions the SDK raises, and the one function that maps an answer to them.

    ModelfleetError                  status, code, message, type, param, details, body
    ├── GatewayUnreachable           no answer at all (refused, reset, DNS); a ConnectionError
    ├── OperationTimeout             a request or a wait ran out of time; a TimeoutError
    ├── MalformedResponseError       an answer that is not the gateway's API
    ├── BadRequestError              400, 413
    │   └── ValidationError          422 (``param`` names the field)
    ├── AuthenticationError          401
    ├── PermissionDeniedError        403
    ├── NotFoundError                404 (MODEL_NOT_FOUND, TASK_NOT_FOUND…)
    ├── ConflictError                409 (MODEL_ALREADY_EXISTS…)
    ├── RateLimitError               429 (``retry_after`` in seconds when the gateway says)
    └── ServerError                  500 and any other 5xx
        ├── UnavailableError         503 (MODEL_START_FAILED, QUEUE_FULL, TASK_TIMEOUT…)
        └── GatewayTimeout           504 (INFERENCE_TIMEOUT)

httpx's transport errors never leave the SDK: :func:`translate_transport_errors`
turns them into the first two classes. An error event inside a stream is raised as
the class its ``type`` names, since a stream has already answered 200.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx


class ModelfleetError(Exception):
    """Any failure of a call to the gateway; ``str()`` is ``CODE: message``."""

    status: int | None = None  # the HTTP status; each subclass says its own
    default_code = "ERROR"  # when the gateway's answer names no code

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        details: dict[str, Any] | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.code = code or self.default_code
        self.type = type
        self.param = param
        self.details = details
        self.body = body
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class GatewayUnreachable(ModelfleetError, ConnectionError):
    default_code = "GATEWAY_UNREACHABLE"


class OperationTimeout(ModelfleetError, TimeoutError):
    default_code = "CLIENT_TIMEOUT"


class MalformedResponseError(ModelfleetError):
    default_code = "MALFORMED_RESPONSE"


class BadRequestError(ModelfleetError):
    status = 400


class ValidationError(BadRequestError):
    status = 422


class AuthenticationError(ModelfleetError):
    status = 401


class PermissionDeniedError(ModelfleetError):
    status = 403


class NotFoundError(ModelfleetError):
    status = 404


class ConflictError(ModelfleetError):
    status = 409


class RateLimitError(ModelfleetError):
    status = 429


class ServerError(ModelfleetError):
    status = 500


class UnavailableError(ServerError):
    status = 503


class GatewayTimeout(ServerError):
    status = 504


_BY_STATUS: dict[int, type[ModelfleetError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError,
    404: NotFoundError, 409: ConflictError, 413: BadRequestError, 422: ValidationError,
    429: RateLimitError, 503: UnavailableError, 504: GatewayTimeout,
}
# The error ``type`` the gateway writes, for errors that arrive inside a stream.
_BY_TYPE: dict[str, type[ModelfleetError]] = {
    "invalid_request_error": BadRequestError, "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError, "not_found_error": NotFoundError,
    "conflict_error": ConflictError, "rate_limit_error": RateLimitError,
    "service_unavailable": UnavailableError, "timeout_error": GatewayTimeout,
}


def _class_of(status: int | None, kind: str | None) -> type[ModelfleetError]:
    if status is None:
        return _BY_TYPE.get(kind or "", ServerError)
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return BadRequestError if status >= 400 else ModelfleetError


def error_from(status: int | None, body: Any, *, text: str = "",
               retry_after: str | None = None) -> ModelfleetError:
    """The exception for an error answer: ``status`` (None inside a stream), its parsed
    JSON ``body`` (anything else when it was not JSON), its raw ``text`` and header
    ``Retry-After``."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):  # not the gateway's envelope: a proxy page, a bare string
        err = {"message": str(err) if err else (text.strip()[:300] or f"HTTP {status}"),
               "code": f"HTTP_{status}" if status else None}
    cls = _class_of(status, err.get("type"))
    try:
        wait = float(retry_after) if retry_after is not None else None
    except ValueError:
        wait = None
    details = err.get("details")
    return cls(
        str(err.get("message") or f"HTTP {status}"),
        status=status,
        code=err.get("code") or None,
        type=err.get("type"),
        param=err.get("param"),
        details=details if isinstance(details, dict) else None,
        body=body,
        retry_after=wait,
    )


@contextmanager
def translate_transport_errors(base_url: str) -> Iterator[None]:
    """Raise httpx's transport errors as GatewayUnreachable or OperationTimeout."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise OperationTimeout(f"no answer from {base_url} in time ({type(exc).__name__})") \
            from exc
    except httpx.TransportError as exc:
        raise GatewayUnreachable(f"cannot reach {base_url}: {exc or type(exc).__name__}") \
            from exc
