"""Seed 002's inference routes: the model is named in the path, not the body.

    POST /api/models/{model_id}/generate          prompt → completion (SSE when stream)
    POST /api/models/{model_id}/chat/completions  OpenAI chat body (SSE when stream)
    POST /api/models/{model_id}/embeddings        OpenAI embeddings body

and the same under ``/api/v1/models/...`` (seed 002 versions its API by path).
The body's ``model`` is ignored: the path's model (id or alias) wins. The
engine's answer is relayed as it comes: a completion is already 002's shape
(``id, model, choices[].text, finish_reason, index, usage, created``) and its
stream chunks are 002's ``data: {"id":…,"choices":[{"text":…,"index":0}]}``
events ending with ``data: [DONE]``.

These are raw ASGI endpoints (Starlette passes a callable object the raw
scope; path parameters arrive in ``scope["path_params"]``) so streams go
through the relay untouched; :func:`install_openapi` documents them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import Route

from modelfleet.api.core import Core
from modelfleet.api.openapi import ERROR_SCHEMA
from modelfleet.engines.base import CHAT, COMPLETION, EMBEDDING
from modelfleet.errors import FleetError, as_fleet_error
from modelfleet.gateway.asgi import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    SendGuard,
    parse_json,
    read_body,
    send_error,
)
from modelfleet.gateway.proxy import principal_of
from modelfleet.protocol import openai as p
from modelfleet.protocol.generate import ModelGenerateRequest

log = logging.getLogger("modelfleet.api")

PREFIXES = ("/api/models", "/api/v1/models")
_REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class PathRoute:
    """One route of seed 002: its body, its answer and what it asks of the engine."""

    suffix: str
    request: type[BaseModel]
    response: type[BaseModel]
    capability: str
    upstream_path: str
    summary: str
    sampling: bool  # takes max_tokens/temperature: per-model limits apply


PATH_ROUTES = (
    PathRoute("generate", ModelGenerateRequest, p.CompletionResponse, COMPLETION,
              "/v1/completions", "Generate text from a prompt (SSE when stream is true)", True),
    PathRoute("chat/completions", p.ChatCompletionRequest, p.ChatCompletionResponse, CHAT,
              "/v1/chat/completions", "Chat completion (SSE when stream is true)", True),
    PathRoute("embeddings", p.EmbeddingRequest, p.EmbeddingResponse, EMBEDDING,
              "/v1/embeddings", "Embeddings", False),
)


class ModelInferenceEndpoint:
    """The raw-ASGI endpoint of one :class:`PathRoute`.

    read body → validate → resolve the path's model (404 if unknown) → set the
    body's model, apply the model's limits → relay to the engine. Every
    failure before the response began leaves as the manager API's JSON error
    (``success: false``, ``message``); one after a stream began is the relay's
    last SSE event.
    """

    def __init__(self, route: PathRoute):
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        core: Core = scope["app"].state.core
        sent = SendGuard(send)
        try:
            payload = parse_json(await read_body(receive, core.settings.server.max_body_bytes))
            p.validate(self.route.request, payload)
            model = core.fleet.resolve(scope["path_params"]["model_id"], self.route.capability)
            principal = principal_of(scope)
            core.proxy.authorize(principal, model)
            await core.proxy.inline_media(payload)
            body, max_tokens = core.proxy.prepare(model, payload, principal=principal)
            await core.proxy.relay_request(scope, receive, sent, model, self.route.upstream_path,
                                           body, max_tokens)
        except ClientDisconnected:
            return
        except Exception as exc:  # noqa: BLE001 - every error leaves as JSON
            err = as_fleet_error(exc)
            if not isinstance(exc, FleetError):
                log.exception("unexpected error on %s", scope["path"])
            if not sent.started:
                await send_error(send, err, scope["path"])


def routes() -> list[Route]:
    """Starlette routes for every PathRoute under every prefix; add before any catch-all."""
    return [
        Route(f"{prefix}/{{model_id:path}}/{route.suffix}",
              endpoint=ModelInferenceEndpoint(route), methods=["POST"])
        for prefix in PREFIXES for route in PATH_ROUTES
    ]


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` also document these routes (call after api.openapi.install)."""
    previous = app.openapi

    def openapi() -> dict[str, Any]:
        schema = previous()
        if f"{PREFIXES[0]}/{{model_id}}/generate" not in schema.get("paths", {}):
            add_paths(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_MANAGER_ERROR = {
    "type": "object",
    "properties": {
        "success": {"type": "boolean", "const": False},
        "message": {"type": "string"},
        **ERROR_SCHEMA["properties"],
    },
}


def add_paths(schema: dict[str, Any]) -> None:
    """Add the path items of every PathRoute (and their component schemas) to ``schema``."""
    pairs = [(m, mode) for r in PATH_ROUTES
             for m, mode in ((r.request, "validation"), (r.response, "serialization"))]
    _, defs = models_json_schema(pairs, ref_template=_REF)  # type: ignore[arg-type]
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in defs.get("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault("ManagerErrorResponse", _MANAGER_ERROR)
    error = {"content": {"application/json": {"schema": {
        "$ref": _REF.format(model="ManagerErrorResponse")}}}}
    paths = schema.setdefault("paths", {})
    for prefix in PREFIXES:
        for route in PATH_ROUTES:
            ok: dict[str, Any] = {"application/json": {"schema": {
                "$ref": _REF.format(model=route.response.__name__)}}}
            if route.sampling:
                ok["text/event-stream"] = {"schema": {"type": "string"}}
            op_id = f"{prefix.strip('/').replace('/', '_')}_{route.suffix.replace('/', '_')}"
            paths[f"{prefix}/{{model_id}}/{route.suffix}"] = {"post": {
                "tags": ["models"],
                "summary": route.summary,
                "description": "The model is the path's `model_id` (id or alias); the body's "
                               "`model` is ignored. Seed 002's API.",
                "operationId": op_id,
                "parameters": [{"name": "model_id", "in": "path", "required": True,
                                "description": "Model id or alias",
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": _REF.format(model=route.request.__name__)}}}},
                "responses": {
                    "200": {"description": "OK", "content": ok},
                    "400": {"description": "Invalid request", **error},
                    "404": {"description": "Unknown model (MODEL_NOT_FOUND)", **error},
                    "503": {"description": "Model unavailable", **error},
                    "504": {"description": "Inference timed out", **error},
                },
            }}
