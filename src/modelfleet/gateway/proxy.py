"""The request path for inference routes, in raw ASGI.

read body → parse → validate → resolve model → ready it and lease an
instance → relay → record usage. FastAPI is not on this path (its per-request
cost is several times the relay's); the routes are still documented in the
OpenAPI schema (api/openapi.py) from the same protocol models.

A client that disconnects cancels the request's task, which closes the
upstream connection at once, so the engine stops generating for it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from pydantic import BaseModel

from modelfleet.engines.base import CHAT, COMPLETION, EMBEDDING, RERANK
from modelfleet.errors import (
    FleetError,
    InvalidRequestError,
    RouteNotFoundError,
    as_fleet_error,
)
from modelfleet.fleet.model import ManagedModel
from modelfleet.fleet.registry import Fleet
from modelfleet.gateway.asgi import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    parse_json,
    read_body,
    send_error,
)
from modelfleet.gateway.relay import Relay
from modelfleet.observability.usage import UsageBook
from modelfleet.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
    validate,
)
from modelfleet.settings import Settings

log = logging.getLogger("modelfleet.gateway")


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """An inference route: what its body must look like and what it needs of a model."""

    request: type[BaseModel] | None
    capability: str | None


INFERENCE_ROUTES: dict[str, RouteSpec] = {
    "/v1/chat/completions": RouteSpec(ChatCompletionRequest, CHAT),
    "/v1/completions": RouteSpec(CompletionRequest, COMPLETION),
    "/v1/embeddings": RouteSpec(EmbeddingRequest, EMBEDDING),
    "/v1/rerank": RouteSpec(RerankRequest, RERANK),
    "/rerank": RouteSpec(RerankRequest, RERANK),
    "/v2/rerank": RouteSpec(RerankRequest, RERANK),
}

# Routes outside /v1 that engines serve and we forward like any /v1 route.
ENGINE_ROUTES = frozenset({
    "/tokenize", "/detokenize", "/pooling", "/score", "/classify", "/invocations",
    "/generate", "/generate_stream",
})
_ANY_ROUTE = RouteSpec(None, None)


def is_forwarded(path: str) -> bool:
    return path.startswith(("/v1/", "/v2/")) or path in ENGINE_ROUTES


class Proxy:
    def __init__(self, settings: Settings, fleet: Fleet, relay: Relay, usage: UsageBook):
        self.settings = settings
        self.fleet = fleet
        self.relay = relay
        self.usage = usage
        self.max_body = settings.server.max_body_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send, spec: RouteSpec) -> None:
        """Serve one inference request; every failure leaves as the JSON error shape."""
        path = scope["path"]
        sent = _SendGuard(send)
        try:
            body = await read_body(receive, self.max_body)
            payload = self._payload(scope, body, spec)
            if spec.capability:
                model = self.fleet.resolve(payload.get("model"), spec.capability)
            else:
                model = self._model_for_any(scope, payload)
            max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
            self._check_limits(model, max_tokens)
            if payload and payload.get("model") != model.upstream_name:
                # An alias, an omitted name or an external server's own name: engines
                # that check the name (vLLM does) must see the one they serve.
                payload["model"] = model.upstream_name
                body = orjson.dumps(payload)
            await self._relay(scope, receive, sent, model, body, max_tokens)
        except ClientDisconnected:
            return
        except Exception as exc:  # noqa: BLE001 - every error leaves as JSON
            err = as_fleet_error(exc)
            if err.status >= 500 and not isinstance(exc, FleetError):
                log.exception("unexpected error on %s", path)
            if not sent.started:
                await send_error(send, err, path)

    async def handle_any(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Any other OpenAI-style route: forwarded to the engine of the body's model."""
        if not is_forwarded(scope["path"]):
            await send_error(send, RouteNotFoundError(f"no route {scope['path']}"), scope["path"])
            return
        await self.handle(scope, receive, send, _ANY_ROUTE)

    def _payload(self, scope: Scope, body: bytes, spec: RouteSpec) -> dict[str, Any]:
        if spec.request is None and not body:
            return {}
        payload = parse_json(body)
        if spec.request is not None:
            validate(spec.request, payload)
        elif not isinstance(payload, dict):
            raise InvalidRequestError("request body must be a JSON object")
        return payload

    def _model_for_any(self, scope: Scope, payload: dict[str, Any]) -> ManagedModel:
        name = payload.get("model")
        if name is None and scope.get("query_string"):
            values = parse_qs(scope["query_string"].decode("latin-1")).get("model")
            name = values[0] if values else None
        if name is None:
            if len(self.fleet.models) == 1:
                return next(iter(self.fleet.models.values()))
            raise InvalidRequestError("`model` is required to route this request", param="model")
        return self.fleet.get(str(name))

    def _check_limits(self, model: ManagedModel, max_tokens: object) -> None:
        cap = model.cfg.limits.max_tokens
        if cap is not None and isinstance(max_tokens, int) and max_tokens > cap:
            raise InvalidRequestError(
                f"max_tokens {max_tokens} exceeds this model's limit of {cap}", param="max_tokens"
            )

    async def _relay(
        self, scope: Scope, receive: Receive, send: _SendGuard, model: ManagedModel,
        body: bytes, max_tokens: object,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.create_task(_cancel_on_disconnect(receive, send, task))
        url_path = scope["path"]
        if scope.get("query_string"):
            url_path += "?" + scope["query_string"].decode("latin-1")
        try:
            async with model.lease() as instance:
                outcome = await self.relay.forward(
                    send, scope["method"], instance.base_url + url_path, body,
                    path=scope["path"], max_tokens=max_tokens, api_key=model.cfg.api_key,
                )
            if outcome.error is None and outcome.status < 400:
                model.note_success()
            self.usage.record(model.name, outcome.status, outcome.usage, outcome.error)
        except asyncio.CancelledError:
            if not watcher.done() or watcher.cancelled():
                raise
            self.usage.record(model.name, 499, None, None)
            log.info("client left %s for %s; upstream request aborted", scope["path"], model.name)
        except FleetError as exc:
            self.usage.record(model.name, exc.status, None, exc)
            raise
        finally:
            watcher.cancel()


class _SendGuard:
    """Wraps ``send`` to know whether the response began and whether it is complete."""

    __slots__ = ("_send", "started", "finished")

    def __init__(self, send: Send):
        self._send = send
        self.started = False
        self.finished = False

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif not message.get("more_body", False):
            self.finished = True
        await self._send(message)


async def _cancel_on_disconnect(receive: Receive, send: _SendGuard, task: asyncio.Task) -> None:
    """Cancel ``task`` when the client disconnects before its response is complete."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not send.finished:
                task.cancel()
            return
