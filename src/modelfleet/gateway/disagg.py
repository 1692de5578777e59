"""Disaggregated serving: one client request through encode, prefill and decode instances.

A model whose instances play roles (``ModelConfig.roles``, or ``endpoints`` with
roles: ``fleet/endpoints.py``) serves a generation request in stages, each on an
instance of one role, leased with the model's routing policy:

    encode   a chat request with media parts goes first to an encode instance: the
             client's body, answered in one step and not streamed (vLLM's EPD
             proxy). The answer's ``mm_hashes`` (the simulator names the media it
             encoded; vLLM's encoder hands its output over through the EC
             connector) are added to the request as top-level ``mm_hashes``. A
             request without media, or a model without encoders, skips this: pd and
             prefill instances encode for themselves.
    pd       E-PD: then the request, relayed to the client as on the plain path.
    prefill  E-P-D and P-D: vLLM's P/D protocol (``engines/vllm.py``): the request
             with ``max_tokens: 1``, ``stream: false``, no ``stream_options`` and
             ``kv_transfer_params: {"do_remote_decode": true, ...}``; its answer's
             ``kv_transfer_params`` are the handle on the KV blocks it keeps;
    decode   then the client's request plus that handle, relayed to the client.

Every stage is retried on another instance of its role after a failure before the
first byte reached the client (the engine unreachable, or answering 500/502/503),
as the plain path retries; a timeout is not. Errors leave as on the plain path.
Every attempt of an encode or prefill stage leaves a request record for its
instance (``stage=True``, so the client's request is counted once); the last
stage's is the client's record. Other routes (embeddings, tokenize, ...) go to one
instance that answers alone: pd, else decode.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from modelfleet.engines.vllm import decode_request, encode_request, prefill_request
from modelfleet.errors import FleetError
from modelfleet.fleet.model import Instance, ManagedModel
from modelfleet.fleet.routing import NO_HINT, RouteHint
from modelfleet.gateway.asgi import Scope, SendGuard
from modelfleet.gateway.inflight import using
from modelfleet.gateway.relay import Outcome, Relay
from modelfleet.gateway.trace import Trace
from modelfleet.observability.records import MetricsBook

log = logging.getLogger("modelfleet.gateway")

CHAT_PATH = "/v1/chat/completions"
GENERATION_PATHS = frozenset({CHAT_PATH, "/v1/completions"})
# Content parts an encoder runs (vLLM's EPD proxy's list, and video).
MEDIA_PARTS = frozenset({"image_url", "audio_url", "input_audio", "video_url"})


class Disaggregator:
    def __init__(self, relay: Relay, metrics: MetricsBook):
        self.relay = relay
        self.metrics = metrics

    async def relay_request(
        self, scope: Scope, send: SendGuard, model: ManagedModel, upstream_path: str,
        body: bytes, max_tokens: object, trace: Trace, hint: RouteHint = NO_HINT,
    ) -> None:
        """Serve one request of a disaggregated model, answering the client through
        ``send``; FleetError when nothing was sent yet (the caller renders it)."""
        await model.ensure_ready()
        path = upstream_path.partition("?")[0]
        role = model.front_role
        payload = orjson.loads(body) if path in GENERATION_PATHS and body else None
        if isinstance(payload, dict):
            role, changed = await self._stages(model, path, payload, trace.route, hint)
            if changed is not None:
                body = orjson.dumps(changed)
        tried: list[Instance] = []
        last: FleetError | None = None
        while True:
            reached = False
            try:
                async with model.lease(exclude=tried, hint=hint, role=role) as inst:
                    tried.append(inst)
                    reached = True
                    trace.reached(model.name, inst)
                    outcome = await forward_reported(self.relay, send, scope, model, inst,
                                                     upstream_path, body, max_tokens)
                trace.answered(outcome)
                if outcome.error is None and outcome.status < 400:
                    model.note_success()
                return
            except FleetError as exc:
                if send.started or not retryable(exc):
                    raise
                if not reached:  # every instance of the role tried, or none there
                    raise last or exc from None
                last = exc
                log.warning("retrying %s on another %s instance of %s: %s", scope["path"],
                            role, model.name, exc.message)

    async def call_json(
        self, model: ManagedModel, upstream_path: str, payload: dict[str, Any],
        max_tokens: object, trace: Trace, hint: RouteHint = NO_HINT,
    ) -> dict[str, Any]:
        """The same stages for a route that reshapes a JSON answer (``Proxy.call_json``);
        ``trace`` becomes the record of the last stage."""
        await model.ensure_ready()
        path = upstream_path.partition("?")[0]
        role, final = model.front_role, None
        if path in GENERATION_PATHS:
            role, final = await self._stages(model, path, payload, trace.route, hint)
        answer = await self._call(model, role, upstream_path, final or payload, max_tokens,
                                  trace.route, hint, trace)
        model.note_success()
        return answer

    async def _stages(
        self, model: ManagedModel, path: str, payload: dict[str, Any], route: str,
        hint: RouteHint,
    ) -> tuple[str, dict[str, Any] | None]:
        """Run the stages before the last: the last stage's role and the body it gets
        (None: the client's, unchanged)."""
        changed: dict[str, Any] | None = None
        if path == CHAT_PATH and model.instances_of("encode") and has_media(payload):
            answer = await self._call(model, "encode", path, encode_request(payload), 1,
                                      route, hint)
            hashes = answer.get("mm_hashes")
            if isinstance(hashes, list) and all(isinstance(h, str) for h in hashes):
                changed = {**payload, "mm_hashes": hashes}
        if model.instances_of("prefill") and model.instances_of("decode"):
            current = changed or payload
            answer = await self._call(model, "prefill", path, prefill_request(current), 1,
                                      route, hint)
            return "decode", decode_request(current, answer)
        return model.front_role, changed

    async def _call(
        self, model: ManagedModel, role: str, path: str, payload: dict[str, Any],
        max_tokens: object, route: str, hint: RouteHint, trace: Trace | None = None,
    ) -> dict[str, Any]:
        """One JSON exchange with an instance of ``role``, retried on the others. Each
        attempt is recorded as a stage of the request, unless ``trace`` (the caller's,
        which it records) is given."""
        tried: list[Instance] = []
        last: FleetError | None = None
        while True:
            stage = trace or Trace(model.name, route)
            reached = False
            try:
                async with model.lease(exclude=tried, hint=hint, role=role) as inst:
                    tried.append(inst)
                    reached = True
                    stage.reached(model.name, inst)
                    try:
                        answer = await self.relay.call_json(
                            inst.base_url + path, payload, max_tokens=max_tokens,
                            api_key=model.cfg.api_key, session=inst.session,
                            request_id=using(model, inst))
                    except FleetError as exc:
                        if retryable(exc):
                            model.report(inst, ok=False)
                        raise
                    model.report(inst, ok=True)
                usage = answer.get("usage")
                stage.answered_json(usage if isinstance(usage, dict) else None)
                return answer
            except FleetError as exc:
                if trace is None:
                    stage.fail(exc)
                if not retryable(exc):
                    raise
                if not reached:
                    raise last or exc from None
                last = exc
                log.warning("retrying the %s stage of %s on another instance: %s", role,
                            model.name, exc.message)
            except asyncio.CancelledError:
                stage.status = 499  # the client left, or the request was aborted
                raise
            finally:
                if trace is None and reached:
                    self.metrics.record(stage.record(stage=True))


def has_media(payload: dict[str, Any]) -> bool:
    """Whether a chat request carries a part an encoder runs (an image, audio, video)."""
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in MEDIA_PARTS:
                    return True
    return False


async def forward_reported(relay: Relay, send: SendGuard, scope: Scope, model: ManagedModel,
                           inst: Instance, upstream_path: str, body: bytes,
                           max_tokens: object) -> Outcome:
    """Relay the request to ``inst`` and tell its circuit breaker how that went (a
    failure another instance would avoid counts against it; a 4xx does not)."""
    try:
        outcome = await relay.forward(
            send, scope["method"], inst.base_url + upstream_path, body,
            path=scope["path"], max_tokens=max_tokens, api_key=model.cfg.api_key,
            rewriter=model.rewriter, session=inst.session, request_id=using(model, inst))
    except FleetError as exc:
        if retryable(exc):
            model.report(inst, ok=False)
        raise
    if outcome.error is None:
        model.report(inst, ok=True)
    elif retryable(outcome.error):
        model.report(inst, ok=False)
    return outcome


def retryable(exc: FleetError) -> bool:
    """Worth another instance: the engine broke, was unreachable or answered
    500/502/503. A timeout is not retried: the work may still be running, and the
    client has already waited the whole first-byte budget."""
    return exc.status in (500, 502, 503) and exc.code not in ("QUEUE_FULL",
                                                               "ENGINE_NOT_INSTALLED")
