"""The request path for inference routes, in raw ASGI.

read body → parse → validate → resolve model → ready it and lease an
instance → relay → record the request. FastAPI is not on this path (its per-request
cost is several times the relay's); the routes are still documented in the
OpenAPI schema (api/openapi.py) from the same protocol models.

A client that disconnects cancels the request's task, which closes the
upstream connection at once, so the engine stops generating for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from pydantic import BaseModel

from modelfleet.auth.principal import Principal
from modelfleet.engines.base import CHAT, COMPLETION, EMBEDDING, RERANK
from modelfleet.errors import (
    FleetError,
    InvalidRequestError,
    PermissionDeniedError,
    RouteNotFoundError,
    as_fleet_error,
)
from modelfleet.fleet.model import Instance, ManagedModel
from modelfleet.fleet.registry import Fleet
from modelfleet.fleet.routing import NO_HINT, RouteHint, prefix_hashes
from modelfleet.gateway.admission import Admission, Ticket
from modelfleet.gateway.asgi import (
    ClientDisconnected,
    DisconnectWatch,
    Receive,
    Scope,
    Send,
    SendGuard,
    parse_json,
    read_body,
    send_error,
)
from modelfleet.gateway.bounds import check_steering
from modelfleet.gateway.disagg import Disaggregator, forward_reported, retryable
from modelfleet.gateway.inflight import InFlightRegistry, answer_aborted
from modelfleet.gateway.media import MediaFetcher, inline_media
from modelfleet.gateway.relay import Relay
from modelfleet.gateway.trace import Trace
from modelfleet.observability.records import MetricsBook, RequestRecord
from modelfleet.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
    check,
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
    def __init__(self, settings: Settings, fleet: Fleet, relay: Relay, metrics: MetricsBook,
                 admission: Admission):
        self.settings = settings
        self.fleet = fleet
        self.relay = relay
        self.metrics = metrics
        self.admission = admission
        self.max_body = settings.server.max_body_bytes
        self.media = MediaFetcher(settings.media)
        self.disagg = Disaggregator(relay, metrics)  # models with encode/prefill/decode roles
        self.inflight = InFlightRegistry(relay.session)  # by request id, for POST /abort

    async def handle(self, scope: Scope, receive: Receive, send: Send, spec: RouteSpec) -> None:
        """Serve one inference request; every failure leaves as the JSON error shape."""
        path = scope["path"]
        sent = SendGuard(send)
        began = time.monotonic()
        try:
            body = await read_body(receive, self.max_body)
            payload = self._payload(scope, body, spec)
            if spec.capability:
                model = self.fleet.resolve(payload.get("model"), spec.capability)
            else:
                model = self._model_for_any(scope, payload)
            principal = principal_of(scope)
            self.authorize(principal, model)
            if await self.inline_media(payload, body):
                body = b""  # changed: prepare serialises the payload again
            body, max_tokens = self.prepare(model, payload, body or None, principal)
            await self.relay_request(scope, receive, sent, model, scope["path"], body, max_tokens,
                                     began, hint=route_hint(model, payload, scope))
        except ClientDisconnected:
            return
        except Exception as exc:  # noqa: BLE001 - every error leaves as JSON
            err = as_fleet_error(exc)
            if err.status >= 500 and not isinstance(exc, FleetError):
                log.exception("unexpected error on %s", path)
            if not sent.started:
                await send_error(send, err, path)
            if not getattr(exc, "recorded", False):  # refused before reaching a model
                self.metrics.record(RequestRecord(
                    model="", route=route_label(path), status=err.status,
                    e2e_s=time.monotonic() - began, error_type=err.code))

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
            check(spec.request, payload)
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

    async def inline_media(self, payload: dict[str, Any], body: bytes | None = None) -> bool:
        """Resolve a chat request's media URLs into checked ``data:`` URLs (see
        ``gateway/media.py``); True when the payload changed. Bodies without a media
        part cost one substring search."""
        if body is not None and b'_url"' not in body:
            return False
        if not isinstance(payload.get("messages"), list):
            return False
        return await inline_media(payload, self.settings.media, self.media)

    @staticmethod
    def authorize(principal: Principal | None, model: ManagedModel) -> None:
        """403 when the caller's key is limited to other models."""
        if principal is not None and not principal.may_use([model.name, *model.cfg.aliases]):
            raise PermissionDeniedError(f"this API key may not use model {model.name!r}",
                                        code="MODEL_NOT_ALLOWED", param="model")

    def prepare(
        self, model: ManagedModel, payload: dict[str, Any], body: bytes | None = None,
        principal: Principal | None = None,
    ) -> tuple[bytes, object]:
        """The body to send ``model``'s engine, and the request's max_tokens.

        Checks the caller may use the model, that no field steers the upstream,
        the model's max_tokens cap (400 past it), and applies its rules (below).
        ``body`` is the client's bytes: sent untouched unless a rule changed the
        payload.
        """
        self.authorize(principal, model)
        check_steering(payload, body)
        max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
        self._check_limits(model, payload)
        if not payload:
            return body or b"", max_tokens
        if self._apply_model_rules(model, payload) or body is None:
            body = orjson.dumps(payload)
        return body, max_tokens

    @staticmethod
    def _apply_model_rules(model: ManagedModel, payload: dict[str, Any]) -> bool:
        """Rewrite ``payload`` for the engine; True when it changed (re-serialise then).

        The name becomes the one the engine serves (an alias, an omitted name or
        an external server's own name: engines that check it, as vLLM does, must
        see theirs); the model's request defaults fill missing sampling parameters.
        """
        changed = False
        if payload.get("model") != model.upstream_name:
            payload["model"] = model.upstream_name
            changed = True
        defaults = model.request_defaults
        if defaults and ("messages" in payload or "prompt" in payload):
            for key, value in defaults.items():
                if payload.get(key) is None and not (
                        key == "max_tokens" and payload.get("max_completion_tokens")):
                    payload[key] = value
                    changed = True
        return changed

    @staticmethod
    def _check_limits(model: ManagedModel, payload: dict[str, Any]) -> None:
        cap = model.cfg.limits.max_tokens
        if cap is None:
            return
        for field in ("max_tokens", "max_completion_tokens"):
            value = payload.get(field)
            if isinstance(value, int) and value > cap:
                raise InvalidRequestError(
                    f"{field} {value} exceeds this model's limit of {cap}", param=field)

    async def relay_request(
        self, scope: Scope, receive: Receive, send: Send, model: ManagedModel,
        upstream_path: str, body: bytes, max_tokens: object, began: float | None = None,
        hint: RouteHint = NO_HINT,
    ) -> None:
        """Admit, then relay ``body`` to ``upstream_path`` on an instance of ``model``.

        A failure before the first byte reached the client is retried once on
        each other instance, then on the model's fallbacks. A client that leaves
        cancels the request: in the admission queue, or upstream. Every request
        leaves one record (``observability/records.py``).
        """
        guard = send if isinstance(send, SendGuard) else SendGuard(send)
        task = asyncio.current_task()
        assert task is not None
        watcher = DisconnectWatch(receive, guard, task)
        if scope.get("query_string"):
            upstream_path += "?" + scope["query_string"].decode("latin-1")
        trace = Trace(model.name, route_label(scope["path"]), began)
        request = self.inflight.open(scope, task)  # its id, and POST /abort finds it
        try:
            async with self._admitted(model, principal_of(scope), trace):
                await self._relay_with_retries(scope, guard, model, upstream_path, body,
                                               max_tokens, trace, hint)
        except asyncio.CancelledError:
            if request.aborted and not watcher.fired:  # POST /abort: tell the client
                await answer_aborted(request, guard, scope["path"], trace)
            elif not watcher.fired:
                raise
            else:
                trace.status = 499
                log.info("client left %s for %s; upstream request aborted", scope["path"],
                         model.name)
        except FleetError as exc:
            trace.fail(exc)
            exc.recorded = True  # type: ignore[attr-defined]
            raise
        finally:
            watcher.cancel()
            self.inflight.close(request)
            self.metrics.record(trace.record())

    def _admitted(self, model: ManagedModel, principal: Principal | None,
                  trace: Trace) -> _Admitted:
        """Hold an admission ticket (rate limits, the model's and the fleet's queues)."""
        return _Admitted(self.admission, model, principal, trace)

    async def _relay_with_retries(
        self, scope: Scope, send: SendGuard, model: ManagedModel, upstream_path: str,
        body: bytes, max_tokens: object, trace: Trace, hint: RouteHint = NO_HINT,
    ) -> None:
        tried: list[Instance] = []
        candidates = [model, *self._fallbacks(model)]
        for current in candidates:
            if current is not model and current.upstream_name != model.upstream_name:
                body = _renamed(body, current.upstream_name)
            tried.clear()
            while True:
                before = len(tried)
                try:
                    await self._relay_once(scope, send, current, upstream_path, body, max_tokens,
                                           tried, trace, hint)
                    return
                except FleetError as exc:
                    if send.started or not retryable(exc):
                        raise
                    last = exc
                    # No instance was reached (the model could not start): go to fallbacks.
                    if len(tried) == before or len(tried) >= len(current.instances):
                        break
                    log.warning("retrying %s on another instance of %s: %s",
                                scope["path"], current.name, exc.message)
            if current is candidates[-1]:
                raise last
            log.warning("%s failed (%s); falling back", current.name, last.message)

    async def _relay_once(
        self, scope: Scope, send: SendGuard, model: ManagedModel, upstream_path: str,
        body: bytes, max_tokens: object, tried: list[Instance], trace: Trace,
        hint: RouteHint = NO_HINT,
    ) -> None:
        if not model.instances:  # discovered models show their roles once they are ready
            await model.ensure_ready()
        if model.disaggregated:  # encode, prefill, decode instances: gateway/disagg.py
            self.metrics.note_running(self.fleet.in_flight() + 1)
            await self.disagg.relay_request(scope, send, model, upstream_path, body,
                                            max_tokens, trace, hint)
            return
        async with model.lease(exclude=tried, hint=hint) as instance:
            tried.append(instance)
            trace.reached(model.name, instance)
            self.metrics.note_running(self.fleet.in_flight())
            outcome = await forward_reported(self.relay, send, scope, model, instance,
                                             upstream_path, body, max_tokens)
        trace.answered(outcome)
        if outcome.error is None and outcome.status < 400:
            model.note_success()

    def _fallbacks(self, model: ManagedModel) -> list[ManagedModel]:
        out = []
        for name in model.cfg.fallbacks:
            try:
                out.append(self.fleet.get(name))
            except FleetError:
                log.warning("fallback %r of %s is not a model", name, model.name)
        return out

    async def call_json(
        self, model: ManagedModel, upstream_path: str, payload: dict[str, Any],
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """One non-streaming request to ``model``'s engine, for routes that reshape answers.

        Limits, renaming, retries on another instance and usage recording are
        the same as on the relay path; the caller turns the JSON into its shape.
        """
        self.authorize(principal, model)
        check_steering(payload)
        payload = dict(payload)
        max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
        self._check_limits(model, payload)
        self._apply_model_rules(model, payload)
        trace = Trace(model.name, upstream_path)
        try:
            async with self._admitted(model, principal, trace):
                return await self._call_with_retries(model, upstream_path, payload, max_tokens,
                                                     trace, route_hint(model, payload))
        except FleetError as exc:
            trace.fail(exc)
            raise
        finally:
            self.metrics.record(trace.record())

    async def _call_with_retries(self, model: ManagedModel, upstream_path: str,
                                 payload: dict[str, Any], max_tokens: object,
                                 trace: Trace, hint: RouteHint = NO_HINT) -> dict[str, Any]:
        if model.disaggregated:  # encode, prefill, decode instances: gateway/disagg.py
            return await self.disagg.call_json(model, upstream_path, payload, max_tokens,
                                               trace, hint)
        tried: list[Instance] = []
        while True:
            before = len(tried)
            try:
                async with model.lease(exclude=tried, hint=hint) as instance:
                    tried.append(instance)
                    trace.reached(model.name, instance)
                    try:
                        answer = await self.relay.call_json(
                            instance.base_url + upstream_path, payload, max_tokens=max_tokens,
                            api_key=model.cfg.api_key, session=instance.session)
                    except FleetError as exc:
                        if retryable(exc):
                            model.report(instance, ok=False)
                        raise
                    model.report(instance, ok=True)
            except FleetError as exc:
                if (not retryable(exc) or len(tried) == before
                        or len(tried) >= len(model.instances)):
                    raise
                continue
            model.note_success()
            usage = answer.get("usage")
            trace.answered_json(usage if isinstance(usage, dict) else None)
            return answer


class _Admitted:
    """``async with``: the request's admission ticket, released with its tokens. A class
    rather than an ``asynccontextmanager``, whose generator costs more on every request."""

    __slots__ = ("admission", "model", "principal", "trace", "ticket")

    def __init__(self, admission: Admission, model: ManagedModel, principal: Principal | None,
                 trace: Trace):
        self.admission = admission
        self.model = model
        self.principal = principal
        self.trace = trace
        self.ticket: Ticket | None = None

    async def __aenter__(self) -> None:
        principal, cfg = self.principal, self.model.cfg
        self.ticket = await self.admission.admit(
            model_name=self.model.name, limits=cfg.limits, priority=cfg.priority,
            key_id=principal.key_id if principal else None,
            rpm=principal.rpm if principal else None, tpm=principal.tpm if principal else None)
        self.trace.admitted(self.ticket.queued_s, principal)

    async def __aexit__(self, *exc_info: object) -> None:
        if self.ticket is not None:
            trace = self.trace
            await self.ticket.release(tokens=trace.prompt_tokens + trace.completion_tokens)


_MODEL_PATHS = ("/generate", "/chat/completions", "/embeddings")


def route_label(path: str) -> str:
    """The route as a metrics label: bounded, whatever paths clients send."""
    if path in INFERENCE_ROUTES or path in ENGINE_ROUTES:
        return path
    if path.startswith("/api/") and path.endswith(_MODEL_PATHS):
        return "/api/models/{id}" + next(p for p in _MODEL_PATHS if path.endswith(p))
    return "other"


def principal_of(scope: Scope) -> Principal | None:
    """The caller the guard put in the scope (None where no guard ran: tests, tools)."""
    state = scope.get("state")
    return state.get("principal") if state else None


def route_hint(model: ManagedModel, payload: dict[str, Any],
               scope: Scope | None = None) -> RouteHint:
    """What ``model``'s routing policy reads of a request: prefix hashes of the prompt
    (prefix_aware), the ``X-Session-Id`` header or the body's ``user`` (session);
    nothing, at no cost, for the other policies."""
    routing = model.cfg.routing
    if routing == "prefix_aware":
        return RouteHint(prefix_hashes=prefix_hashes(payload))
    if routing == "session":
        for name, value in scope.get("headers", ()) if scope else ():
            if name == b"x-session-id":
                return RouteHint(session=value.decode("latin-1"))
        user = payload.get("user")
        return RouteHint(session=user) if isinstance(user, str) and user else NO_HINT
    return NO_HINT


def _renamed(body: bytes, name: str) -> bytes:
    payload = orjson.loads(body)
    payload["model"] = name
    return orjson.dumps(payload)

