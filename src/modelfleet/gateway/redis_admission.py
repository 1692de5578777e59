"""Admission state shared through Redis, so that several gateways enforce one set of limits.

Rate windows and gates live in Redis (layout and scripts: ``redis_scripts``). A granted
slot is a lease with an expiry that one background task of this process renews; a
gateway that dies stops renewing and its slots come free after ``lease_ttl_s``. A waiter
re-runs the acquire script when a release is published on the ``gate-free`` channel, and
every ``poll_s`` in case a message was lost; each run also proves it is still alive.

If Redis cannot be reached, the request is served from this process's own counters
(``InProcessBackend``), a warning is logged at most every 30 s, and Redis is tried again
after ``retry_s``: the gateway keeps serving, with limits enforced per process meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from modelfleet.gateway import redis_scripts as lua
from modelfleet.gateway.gates import (
    GateSpec,
    InProcessBackend,
    LocalSlot,
    queue_full,
    queue_timeout,
)
from modelfleet.gateway.ratelimit import WINDOW_S, rate_limited
from modelfleet.gateway.redis_link import REDIS_ERRORS, RedisLink

_PRIORITY_BOUND = 2**20  # keeps -priority * 2^32 + arrival exact in a double


class RedisSlot:
    """A lease held on a shared gate."""

    __slots__ = ("backend", "gate", "lease")

    def __init__(self, backend: RedisBackend, gate: str, lease: str):
        self.backend = backend
        self.gate = gate
        self.lease = lease

    async def release(self) -> None:
        await self.backend.release(self.gate, self.lease)


class _GateView:
    """This process's side of a shared gate, and the global counts it last saw."""

    __slots__ = ("spec", "running", "waiting", "peak_running", "rejected", "timed_out",
                 "shared_running", "shared_waiting")

    def __init__(self, spec: GateSpec):
        self.spec = spec
        self.running = self.waiting = self.peak_running = 0
        self.rejected = self.timed_out = self.shared_running = self.shared_waiting = 0

    def stats(self) -> dict[str, Any]:
        return {
            "max_concurrent": self.spec.max_concurrent, "max_queue": self.spec.max_queue,
            **{name: getattr(self, name) for name in self.__slots__[1:]},
        }


class RedisBackend:
    """Rate windows and gates in Redis; falls back to ``local`` while Redis is away."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "modelfleet:",
        window_s: int = WINDOW_S,
        lease_ttl_s: float = 15.0,
        poll_s: float = 0.1,
        retry_s: float = 5.0,
        timeout_s: float = 1.0,
    ):
        self.prefix = prefix
        self.window_s = window_s
        self.lease_ttl_s = lease_ttl_s
        self.poll_s = poll_s
        self.local = InProcessBackend(window_s)
        self.link = RedisLink(url, f"{prefix}gate-free", retry_s=retry_s, timeout_s=timeout_s)
        self._rate_check = self.link.script(lua.RATE_CHECK)
        self._rate_record = self.link.script(lua.RATE_RECORD)
        self._acquire = self.link.script(lua.GATE_ACQUIRE)
        self._release = self.link.script(lua.GATE_RELEASE)
        self._renew = self.link.script(lua.GATE_RENEW)
        self._views: dict[str, _GateView] = {}
        self._held: dict[str, set[str]] = {}

    async def check_rate(self, key_id: str, rpm: int | None, tpm: int | None) -> None:
        if self.link.usable:
            args = [-1 if rpm is None else rpm, -1 if tpm is None else tpm, self.window_s]
            try:
                result = await self.link.call(self._rate_check, [self._rate_key(key_id)], args)
            except REDIS_ERRORS as exc:
                self.link.failed(exc)
            else:
                if result[0] == 1:
                    return
                which = result[1].decode()
                limit = rpm if which == "rpm" else tpm
                raise rate_limited(which, limit or 0, float(result[2]), self.window_s)
        await self.local.check_rate(key_id, rpm, tpm)

    async def record_tokens(self, key_id: str, tokens: int) -> None:
        if tokens <= 0:
            return
        if self.link.usable:
            try:
                args = [tokens, self.window_s]
                await self.link.call(self._rate_record, [self._rate_key(key_id)], args)
                return
            except REDIS_ERRORS as exc:
                self.link.failed(exc)
        await self.local.record_tokens(key_id, tokens)

    async def acquire(
        self, spec: GateSpec, priority: int, timeout: float
    ) -> tuple[RedisSlot | LocalSlot, float]:
        view = self._views.get(spec.name)
        if view is None:
            view = self._views[spec.name] = _GateView(spec)
        view.spec = spec
        if not self.link.usable:
            return await self.local.acquire(spec, priority, timeout)
        self.link.start(self._keep_leases)
        loop = asyncio.get_running_loop()
        start = loop.time()
        lease = uuid.uuid4().hex
        keys = self._gate_keys(spec.name)
        try:
            state = await self._wait_turn(spec, view, priority, lease, keys, start + timeout)
        except REDIS_ERRORS as exc:
            # Whatever Redis may hold for this lease lapses after the TTL: it is not renewed.
            self.link.failed(exc)
            remaining = max(0.0, start + timeout - loop.time())
            slot, _ = await self.local.acquire(spec, priority, remaining)
            return slot, loop.time() - start
        except BaseException:
            await self._leave(spec.name, lease)  # it may have been granted meanwhile
            raise
        if state == -1:
            view.rejected += 1
            raise queue_full(spec.name, view.shared_waiting, spec.max_queue)
        if state == 0:
            await self._leave(spec.name, lease)
            view.timed_out += 1
            raise queue_timeout(spec.name, timeout)
        self._held.setdefault(spec.name, set()).add(lease)
        view.running += 1
        view.peak_running = max(view.peak_running, view.running)
        return RedisSlot(self, spec.name, lease), loop.time() - start

    async def _wait_turn(
        self, spec: GateSpec, view: _GateView, priority: int, lease: str, keys: list[str],
        deadline: float,
    ) -> int:
        """Run the acquire script until granted (1), refused (-1) or past ``deadline`` (0)."""
        loop = asyncio.get_running_loop()
        rank = -max(-_PRIORITY_BOUND, min(_PRIORITY_BOUND, priority))
        args: list[Any] = [lease, rank, spec.max_concurrent or 0, spec.max_queue,
                           int(self.lease_ttl_s * 1000)]
        queued = 0
        try:
            while True:
                state, running, waiting = await self.link.call(
                    self._acquire, keys, [*args, queued]
                )
                view.shared_running, view.shared_waiting = running, waiting
                if state != 0:
                    return int(state)
                if not queued:
                    queued = 1
                    view.waiting += 1
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return 0
                await self.link.sleep(spec.name, min(self.poll_s, remaining))
        finally:
            view.waiting -= queued

    async def release(self, gate: str, lease: str) -> None:
        """Give a lease back; while Redis is away it lapses on its own (it is not renewed)."""
        held = self._held.get(gate)
        if held is None or lease not in held:
            return
        held.discard(lease)
        self._views[gate].running -= 1
        if self.link.usable:
            await self._leave(gate, lease)

    async def _leave(self, gate: str, lease: str) -> None:
        """Remove ``lease`` from the gate's leases and queue; a freed slot wakes waiters."""
        keys = self._gate_keys(gate)[:3]
        try:
            await self.link.call(self._release, keys, [lease, self.link.channel, gate])
        except REDIS_ERRORS as exc:
            self.link.failed(exc)

    async def _keep_leases(self) -> None:
        """Renew every lease this process holds, three times per TTL."""
        ttl_ms = int(self.lease_ttl_s * 1000)
        while True:
            await asyncio.sleep(self.lease_ttl_s / 3)
            for gate, leases in list(self._held.items()):
                if leases:
                    try:
                        keys = self._gate_keys(gate)[:1]
                        await self.link.call(self._renew, keys, [ttl_ms, *leases])
                    except REDIS_ERRORS as exc:
                        self.link.warn(exc)

    def _rate_key(self, key_id: str) -> str:
        return f"{self.prefix}rl:{key_id}"

    def _gate_keys(self, gate: str) -> list[str]:
        return [f"{self.prefix}gate:{gate}:{part}" for part in ("leases", "queue", "alive", "seq")]

    def stats(self) -> dict[str, Any]:
        out = {name: view.stats() for name, view in self._views.items()}
        for name, local in self.local.stats().items():
            out.setdefault(name, {})["fallback"] = local
        return out

    async def close(self) -> None:
        """Stop renewing and disconnect. Leases still held lapse after ``lease_ttl_s``."""
        await self.link.close()
