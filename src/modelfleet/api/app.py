"""The ASGI application: a raw-ASGI front for inference, FastAPI for the rest.

``create_app(settings)`` returns ``GatewayApp``. Inference POSTs (chat,
completions, embeddings, rerank) are dispatched by a dict lookup straight to
the proxy; every other request goes to the FastAPI app, whose last route
forwards unknown OpenAI-style paths to the engine of the body's model. Every
HTTP and WebSocket request passes the guard first (``auth/guard.py``): header
size, Host, authentication, role; the caller's Principal is put in
``scope["state"]["principal"]``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from modelfleet import __version__
from modelfleet.api import (
    alerts,
    auth,
    config,
    control,
    devices,
    fleet,
    generate,
    health,
    logs,
    manage,
    metrics,
    model_inference,
    models,
    monitoring,
    openapi,
    system,
    ui,
    ws,
)
from modelfleet.api.core import Core
from modelfleet.auth.guard import Guard
from modelfleet.errors import (
    FleetError,
    InvalidRequestError,
    NotFoundError,
    RouteNotFoundError,
    UnavailableError,
    as_fleet_error,
    render_error,
)
from modelfleet.gateway.asgi import Message, Receive, Scope, Send, send_error
from modelfleet.gateway.proxy import INFERENCE_ROUTES
from modelfleet.settings import Settings

log = logging.getLogger("modelfleet.api")


def _error_response(exc: FleetError, path: str) -> Response:
    status, headers, body = render_error(exc, path)
    return Response(body, status_code=status,
                    headers={k.decode(): v.decode() for k, v in headers})


def build_api(settings: Settings, holder: GatewayApp) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        core = await Core.open(settings)
        app.state.core = core
        holder.core = core
        holder.guard = Guard(settings, core.auth)
        await core.start()
        try:
            yield
        finally:
            await core.close()

    api = FastAPI(
        title="modelfleet",
        version=__version__,
        description="One OpenAI-compatible endpoint for a fleet of models.",
        lifespan=lifespan,
    )
    api.include_router(health.router)
    api.include_router(control.router)
    api.include_router(manage.router, prefix="/api")
    api.include_router(manage.router, prefix="/api/v1")
    api.include_router(config.router, prefix="/api")
    api.include_router(alerts.router, prefix="/api")
    api.include_router(alerts.router, prefix="/api/v1")
    api.include_router(auth.router, prefix="/api")
    api.include_router(auth.router, prefix="/api/v1")
    api.include_router(config.router, prefix="/api/v1")
    api.include_router(models.router)
    api.include_router(devices.router)
    api.include_router(fleet.router)
    api.include_router(metrics.router)
    api.include_router(monitoring.router)
    api.include_router(system.router)
    api.include_router(ws.router)
    api.include_router(ui.router)
    api.include_router(generate.router)
    api.include_router(logs.router)
    api.router.routes.extend(model_inference.routes())

    @api.exception_handler(FleetError)
    async def fleet_error(request: Request, exc: FleetError) -> Response:
        return _error_response(exc, request.url.path)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"] if p != "body")
        err = InvalidRequestError(f"{param}: {first['msg']}", param=param or None)
        err.status = 422
        return _error_response(err, request.url.path)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        err: FleetError
        if exc.status_code == 404:
            err = RouteNotFoundError(f"no route {request.url.path}")
        else:
            err = FleetError(str(exc.detail), code=f"HTTP_{exc.status_code}")
            err.status = exc.status_code
            err.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return _error_response(err, request.url.path)

    @api.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return _error_response(as_fleet_error(exc), request.url.path)

    # Last route: everything else is forwarded to an engine or answered 404.
    api.router.routes.append(Route("/{path:path}", endpoint=_Forwarder(holder),
                                   methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                                   include_in_schema=False))
    model_inference.install_openapi(api)
    openapi.install(api)  # last: it adds every operation's errors, those above included
    return api


class _Forwarder:
    """A plain ASGI callable, so Starlette hands it the raw scope (not a Request)."""

    def __init__(self, holder: GatewayApp):
        self.holder = holder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.holder.forward_any(scope, receive, send)


class GatewayApp:
    """The outer ASGI callable uvicorn runs."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.core: Core | None = None
        self.guard: Guard | None = None
        self.api = build_api(settings, self)
        origins = settings.server.cors_origins
        # Browsers call the API directly (a page's fetch): CORS answers their preflights
        # before the guard, which then checks the real request as any other.
        self.entry: Any = CORSMiddleware(
            self.dispatch, allow_origins=origins, allow_methods=["*"], allow_headers=["*"],
            expose_headers=["Retry-After"], max_age=600) if origins else self.dispatch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.entry(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            if self.guard is None:
                await send_error(send, UnavailableError("starting up"), scope["path"])
                return
            try:
                principal = await self.guard.check(scope)
            except FleetError as err:
                await _refuse(scope, receive, send, err)
                return
            scope.setdefault("state", {})["principal"] = principal
        if kind == "http" and scope["method"] == "POST" and self.core is not None:
            spec = INFERENCE_ROUTES.get(scope["path"])
            if spec is not None:
                await self.core.proxy.handle(scope, receive, send, spec)
                return
        if kind == "lifespan":
            send = _freeze_after_startup(send)
        await self.api(scope, receive, send)

    def begin_shutdown(self) -> None:
        if self.core is not None:
            self.core.begin_shutdown()

    async def forward_any(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.core is None:
            raise NotFoundError("not ready")
        await self.core.proxy.handle_any(scope, receive, send)


def _freeze_after_startup(send: Send) -> Send:
    """The lifespan's ``send``: once startup is complete, everything made so far (modules,
    routes, mappers, the fleet: most of the heap) moves to the collector's permanent
    generation, so a full collection scans only what serving made since. Measured under
    load, full collections otherwise paused every request for 100 ms and more."""
    async def forward(message: Message) -> None:
        if message["type"] == "lifespan.startup.complete":
            gc.collect()
            gc.freeze()
        await send(message)

    return forward


async def _refuse(scope: Scope, receive: Receive, send: Send, err: FleetError) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": err.message[:120]})
        return
    await send_error(send, err, scope["path"])


def create_app(settings: Settings) -> GatewayApp:
    return GatewayApp(settings)
