"""Requests in flight on this gateway, by id: what ``POST /abort`` finds and cancels.

Every request on the relay path gets an id when it arrives (``open``): the
client's ``X-Request-Id`` when it is sane (a letter or digit, then up to 127 of
``A-Za-z0-9._:@+=/-``, and not already in flight), else a fresh one. The id goes
upstream as X-Request-Id on every call the request makes (each stage of a
disaggregated one) and back to the client in the response headers. Engines name
their answers after it (``chatcmpl-<id>``, ``cmpl-<id>``), so those ids find it too.

``abort(id)`` marks the request aborted, cancels its task (which closes its
upstream connection: the engine stops generating) and tells each engine the
request used through its adapter's ``abort_path``, where it has one. The request
path then ends the client's answer with the ``REQUEST_ABORTED`` error
(``answer_aborted``): a last SSE event and ``[DONE]`` once a stream began, the
JSON error (status 499) before.

The registry is local; ``ids()`` and ``abort()`` are all a broadcaster needs to
fan an abort out to every gateway of a fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from modelfleet.errors import FleetError, sse_error_event
from modelfleet.gateway.asgi import Scope, SendGuard, send_error

if TYPE_CHECKING:
    from modelfleet.fleet.model import Instance, ManagedModel
    from modelfleet.gateway.trace import Trace

log = logging.getLogger("modelfleet.gateway")

SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=/-]{0,127}")
RESPONSE_PREFIXES = ("chatcmpl-", "cmpl-")
ENGINE_ABORT_TIMEOUT_S = 2.0
ABORTED_STATUS = 499  # counted as aborted, like a client that left
# Our ids: 32 hex digits, a random prefix per process and a counter (a uuid4 costs ten
# times as much per request); unique across the gateways of a fleet.
_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count()

# The request the running task serves: set by ``open`` for the task of one request,
# read where instances are leased, deep in the request path.
_current: ContextVar[InFlight | None] = ContextVar("modelfleet_in_flight", default=None)


@dataclass(eq=False, slots=True)
class InFlight:
    """One request in flight: its id, its task and the instances it used."""

    id: str
    task: asyncio.Task[Any]
    using: list[tuple[ManagedModel, Instance]] = field(default_factory=list)
    aborted: bool = False
    token: Token[InFlight | None] | None = None


def using(model: ManagedModel, instance: Instance) -> str | None:
    """Note that the current request holds ``instance`` of ``model``; its id, for the
    X-Request-Id header (None outside a request: tools, tests)."""
    request = _current.get()
    if request is None:
        return None
    request.using.append((model, instance))
    return request.id


def aborted_error() -> FleetError:
    err = FleetError("the request was aborted (POST /abort)", code="REQUEST_ABORTED")
    err.status = ABORTED_STATUS
    err.type = "request_aborted"
    return err


class InFlightRegistry:
    def __init__(self, session: aiohttp.ClientSession):
        self.session = session  # for the engines' abort routes (sockets: the instance's)
        self.requests: dict[str, InFlight] = {}

    def open(self, scope: Scope, task: asyncio.Task[Any]) -> InFlight:
        """Register the request ``task`` serves; ``close`` it when it ends."""
        rid = client_id(scope)
        if rid is None or rid in self.requests:
            rid = f"{_ID_PREFIX}{next(_ID_COUNTER):020x}"
        request = InFlight(rid, task)
        request.token = _current.set(request)
        self.requests[rid] = request
        return request

    def close(self, request: InFlight) -> None:
        if self.requests.get(request.id) is request:
            del self.requests[request.id]
        if request.token is not None:
            with contextlib.suppress(ValueError):  # closed from another context
                _current.reset(request.token)
            request.token = None

    def find(self, rid: str) -> InFlight | None:
        """The request called ``rid``, or whose engine answer is called so."""
        found = self.requests.get(rid)
        if found is None:
            for prefix in RESPONSE_PREFIXES:
                if rid.startswith(prefix):
                    return self.requests.get(rid[len(prefix):])
        return found

    def ids(self) -> list[str]:
        return list(self.requests)

    async def abort(self, rid: str) -> bool:
        """Abort the request ``rid`` if it is in flight here; whether it was."""
        request = self.find(rid)
        if request is None or request.aborted or request.task.done():
            return False
        request.aborted = True
        request.task.cancel()  # first: the client must not see the engine's own ending
        await self._tell_engines(request)
        return True

    async def _tell_engines(self, request: InFlight) -> None:
        calls, seen = [], set()
        for model, inst in request.using:
            path = model.adapter.abort_path(model.cfg)
            if path is not None and inst.base_url not in seen:
                seen.add(inst.base_url)
                calls.append(self._post(model, inst, path, request.id))
        await asyncio.gather(*calls)

    async def _post(self, model: ManagedModel, inst: Instance, path: str, rid: str) -> None:
        headers = {"Authorization": f"Bearer {model.cfg.api_key}"} if model.cfg.api_key \
            else None
        try:
            async with (inst.session or self.session).post(
                    inst.base_url + path, json={"request_ids": [rid]}, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=ENGINE_ABORT_TIMEOUT_S)) as resp:
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The closed connection stops the engine anyway; this was a courtesy.
            log.info("could not ask %s to abort %s: %r", inst.address, rid, exc)


def client_id(scope: Scope) -> str | None:
    """The client's X-Request-Id, when it is one we can pass on safely."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if SANE_ID.fullmatch(text) else None
    return None


async def answer_aborted(request: InFlight, send: SendGuard, path: str, trace: Trace) -> None:
    """End an aborted request's answer: the client is still there and is told why."""
    request.task.uncancel()  # the cancellation was ours and has done its work
    err = aborted_error()
    trace.status, trace.error_type = err.status, err.code
    if send.finished:
        return
    if send.started:
        await send({"type": "http.response.body", "body": sse_error_event(err, path),
                    "more_body": False})
    else:
        await send_error(send, err, path)
