"""How errors leave the engine: always JSON ``{"error": {message, type, code, param}}``.

The engine raises the project's error hierarchy (:mod:`modelfleet.errors`) and renders it
with the project's one renderer, so the gateway relays engine errors unchanged. Routes
are wrapped by :func:`endpoint`; Starlette's own 404/405 and anything that escapes a
route go through the handlers of :data:`EXCEPTION_HANDLERS`. A 500 is a bug: it is logged
with its traceback and answered without internals.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from modelfleet.errors import (
    FleetError,
    InvalidRequestError,
    NotFoundError,
    as_fleet_error,
    render_error,
)

log = logging.getLogger("modelfleet.engines.builtin")

Endpoint = Callable[[Request], Awaitable[Response]]


class MethodNotAllowedError(InvalidRequestError):
    status = 405
    code = "METHOD_NOT_ALLOWED"


def error_response(exc: FleetError, path: str) -> Response:
    """The JSON response for ``exc`` answered on ``path``."""
    status, raw_headers, body = render_error(exc, path)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw_headers}
    return Response(body, status_code=status, headers=headers)


def internal_error(exc: BaseException, path: str) -> Response:
    """Log a bug with its traceback and answer a generic 500."""
    log.error("unhandled error on %s", path, exc_info=exc)
    return error_response(as_fleet_error(exc), path)


def endpoint(fn: Endpoint) -> Endpoint:
    """Wrap a route: FleetErrors render as themselves, a client that left mid-body gets
    nothing (nobody is there to read it), anything else is a logged 500."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except FleetError as exc:
            return error_response(exc, request.url.path)
        except ClientDisconnect:
            return Response(status_code=499)
        except Exception as exc:
            return internal_error(exc, request.url.path)

    return wrapper


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        return error_response(NotFoundError(f"no route {request.method} {path}"), path)
    if exc.status_code == 405:
        response = error_response(
            MethodNotAllowedError(f"method {request.method} is not allowed on {path}"), path
        )
        if exc.headers and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    error = FleetError(str(exc.detail), code="HTTP_ERROR")
    error.status = exc.status_code
    if exc.status_code < 500:
        error.type = "invalid_request_error"
    return error_response(error, path)


async def _unhandled(request: Request, exc: Exception) -> Response:
    return internal_error(exc, request.url.path)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Callable[[Request, Exception], Awaitable[Response]]]
EXCEPTION_HANDLERS = {HTTPException: _http_exception, Exception: _unhandled}
