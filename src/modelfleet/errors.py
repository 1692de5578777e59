"""The whole error hierarchy, and the one renderer every error leaves through.

    FleetError                      500 server_error          INTERNAL_ERROR
    ├── ConfigError                 500 server_error          CONFIG_INVALID
    ├── InvalidRequestError         400 invalid_request_error INVALID_PARAMETER
    │   ├── BodyTooLargeError       413                       PAYLOAD_TOO_LARGE
    │   ├── HeadersTooLargeError    431                       HEADERS_TOO_LARGE
    │   └── InvalidJSONError        400                       INVALID_JSON
    ├── AuthenticationError         401 authentication_error  UNAUTHORIZED
    ├── PermissionDeniedError       403 permission_error      FORBIDDEN
    ├── NotFoundError               404 not_found_error       NOT_FOUND
    │   ├── ModelNotFoundError      404                       MODEL_NOT_FOUND
    │   └── RouteNotFoundError      404                       ROUTE_NOT_FOUND
    ├── ConflictError               409 conflict_error        CONFLICT
    ├── RateLimitedError            429 rate_limit_error      RATE_LIMITED
    ├── UpstreamError               502 server_error          UPSTREAM_ERROR
    ├── UnavailableError            503 service_unavailable   MODEL_UNAVAILABLE
    │   ├── QueueFullError          503                       QUEUE_FULL
    │   ├── ModelStartError         503                       MODEL_START_FAILED
    │   │   └── InsufficientResourcesError 503                INSUFFICIENT_RESOURCES
    │   ├── DownstreamFailedError   503                       DOWNSTREAM_REQUEST_FAILED
    │   └── MetastoreUnavailableError 503                     METASTORE_UNAVAILABLE
    └── InferenceTimeoutError       504 timeout_error         INFERENCE_TIMEOUT

Every error is raised, never returned, and rendered by ``render_error`` into
``{"error": {message, type, code, param, details}, "timestamp", "path"}``.
``error`` is never a bare string: clients (the openai SDK among them) read
``error.message``. Routes of the TGI-style API (``/v1/generate``) also carry
``error_code``; routes of the manager API (``/api/models/...``, ``/api/logs``)
carry ``success: false`` and ``message``, as their own clients expect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson


class FleetError(Exception):
    status = 500
    type = "server_error"
    code = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.details = details
        self.retry_after = retry_after
        self.extra = extra or {}
        if code is not None:
            self.code = code


class ConfigError(FleetError):
    code = "CONFIG_INVALID"


class InvalidRequestError(FleetError):
    status = 400
    type = "invalid_request_error"
    code = "INVALID_PARAMETER"


class BodyTooLargeError(InvalidRequestError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class HeadersTooLargeError(InvalidRequestError):
    status = 431
    code = "HEADERS_TOO_LARGE"


class InvalidJSONError(InvalidRequestError):
    code = "INVALID_JSON"


class AuthenticationError(FleetError):
    status = 401
    type = "authentication_error"
    code = "UNAUTHORIZED"


class PermissionDeniedError(FleetError):
    status = 403
    type = "permission_error"
    code = "FORBIDDEN"


class NotFoundError(FleetError):
    status = 404
    type = "not_found_error"
    code = "NOT_FOUND"


class ModelNotFoundError(NotFoundError):
    code = "MODEL_NOT_FOUND"


class RouteNotFoundError(NotFoundError):
    code = "ROUTE_NOT_FOUND"


class ConflictError(FleetError):
    status = 409
    type = "conflict_error"
    code = "CONFLICT"


class RateLimitedError(FleetError):
    status = 429
    type = "rate_limit_error"
    code = "RATE_LIMITED"


class UpstreamError(FleetError):
    """The engine answered badly or broke the connection mid-request."""

    status = 502
    code = "UPSTREAM_ERROR"


class UnavailableError(FleetError):
    status = 503
    type = "service_unavailable"
    code = "MODEL_UNAVAILABLE"


class QueueFullError(UnavailableError):
    code = "QUEUE_FULL"


class ModelStartError(UnavailableError):
    code = "MODEL_START_FAILED"


class InsufficientResourcesError(ModelStartError):
    """No launch profile of the model fits its devices, even after stopping idle models."""

    code = "INSUFFICIENT_RESOURCES"


class DownstreamFailedError(UnavailableError):
    """The engine could not be reached at all."""

    code = "DOWNSTREAM_REQUEST_FAILED"


class MetastoreUnavailableError(UnavailableError):
    """Redis (the shared metastore) is down or did not answer in time."""

    code = "METASTORE_UNAVAILABLE"


class InferenceTimeoutError(FleetError):
    status = 504
    type = "timeout_error"
    code = "INFERENCE_TIMEOUT"


def as_fleet_error(exc: BaseException) -> FleetError:
    """Any exception as a FleetError; unknown ones become a generic 500 (no internals leak)."""
    if isinstance(exc, FleetError):
        return exc
    return FleetError("internal error", details={"exception": type(exc).__name__})


def _flavour(path: str) -> str:
    if path.startswith("/v1/generate"):
        return "tgi"
    if path.startswith(("/api/models", "/api/v1/models", "/api/logs", "/api/devices")):
        return "manager"
    return "openai"


def error_payload(exc: FleetError, path: str) -> dict[str, Any]:
    """The JSON object of DESIGN §5 for ``exc`` answered on ``path``."""
    body: dict[str, Any] = {
        "error": {
            "message": exc.message,
            "type": exc.type,
            "code": exc.code,
            "param": exc.param,
            "details": exc.details,
        },
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "path": path,
    }
    flavour = _flavour(path)
    if flavour == "tgi":
        body["error_code"] = exc.code
    elif flavour == "manager":
        body["success"] = False
        body["message"] = exc.message
    body.update(exc.extra)
    return body


def render_error(exc: FleetError, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, raw ASGI headers and body bytes for ``exc``."""
    headers = [(b"content-type", b"application/json")]
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(exc.retry_after))).encode()))
    if exc.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="modelfleet"'))
    return exc.status, headers, orjson.dumps(error_payload(exc, path))


def sse_error_event(exc: FleetError, path: str) -> bytes:
    """The last events of a stream that failed after it began: the error, then [DONE]."""
    return b"data: " + orjson.dumps(error_payload(exc, path)) + b"\n\ndata: [DONE]\n\n"
