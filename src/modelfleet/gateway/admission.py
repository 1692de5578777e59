"""Admission: whether a request may run now, must wait, or is refused.

The proxy calls ``Admission.admit`` after authentication and before it leases an
instance. In order it checks the API key's rate limits (429 ``RATE_LIMITED``), takes a
slot of the model's gate, then a slot of the fleet-wide gate (503 ``QUEUE_FULL`` at once
when a queue is full; 503 ``QUEUE_TIMEOUT`` after ``server.queue_timeout_s``). Gates are
always taken model first, fleet last, so a fleet slot is only ever held by a request
that needs nothing more, and no two requests can wait on each other. The ``Ticket`` it
returns gives the slots back and records the response's tokens.

State lives in a backend: ``InProcessBackend`` by default, ``RedisBackend`` when
``redis_url`` is set, so that several gateways share counters and gates. A request that
sets no limit of any kind costs a few attribute checks and one small object.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from modelfleet.errors import RateLimitedError
from modelfleet.gateway.gates import GateSpec, InProcessBackend, queue_bound
from modelfleet.gateway.ratelimit import RateWindow

if TYPE_CHECKING:
    from modelfleet.settings import Limits, Settings

FLEET_GATE = "fleet"
MODEL_GATE = "model:"


class Slot(Protocol):
    async def release(self) -> None: ...


class AdmissionBackend(Protocol):
    """Where rate windows and gates live. Every method may be called concurrently."""

    name: str

    async def check_rate(self, key_id: str, rpm: int | None, tpm: int | None) -> None:
        """Count a request, or raise RateLimitedError."""

    async def record_tokens(self, key_id: str, tokens: int) -> None: ...

    async def acquire(self, spec: GateSpec, priority: int, timeout: float) -> tuple[Slot, float]:
        """A slot of gate ``spec`` and the seconds spent queued for it.

        Raises QueueFullError at once when the queue is full, UnavailableError
        ``QUEUE_TIMEOUT`` after ``timeout`` s; a cancelled caller holds nothing.
        """
        ...

    def stats(self) -> dict[str, Any]:
        """Per gate name: running, waiting, peak_running, rejected, timed_out."""
        ...

    async def close(self) -> None: ...


class Ticket:
    """What an admitted request holds; ``release`` (or leaving ``async with``) gives it back."""

    __slots__ = ("queued_s", "_backend", "_slots", "_key_id", "_released", "_rates")

    def __init__(
        self,
        backend: AdmissionBackend,
        slots: tuple[Slot, ...],
        key_id: str | None,
        queued_s: float,
        rates: RateWindow | None = None,
    ):
        self.queued_s = queued_s
        self._backend = backend
        self._slots = slots
        self._key_id = key_id
        self._released = False
        self._rates = rates  # the in-process windows, written without a coroutine

    async def release(self, tokens: int = 0) -> None:
        """Give the slots back and add ``tokens`` to the key's TPM window. Idempotent."""
        if self._released:
            return
        self._released = True
        for slot in reversed(self._slots):
            await slot.release()
        if tokens > 0 and self._key_id is not None:
            if self._rates is not None:
                self._rates.record(self._key_id, tokens)
            else:
                await self._backend.record_tokens(self._key_id, tokens)

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()


class Admission:
    """Rate limits per API key and concurrency per model and fleet, over one backend."""

    def __init__(
        self,
        backend: AdmissionBackend | None = None,
        *,
        max_concurrent: int | None = None,
        max_queue: int | None = None,
        queue_timeout_s: float = 300.0,
    ):
        self.backend: AdmissionBackend = backend or InProcessBackend()
        self.queue_timeout_s = queue_timeout_s
        # In-process windows are checked directly: no coroutine per request for them.
        self._rates = self.backend.rates if isinstance(self.backend, InProcessBackend) else None
        self._fleet = (
            None if max_concurrent is None
            else GateSpec(FLEET_GATE, max_concurrent, queue_bound(max_concurrent, max_queue))
        )
        # Models that once had a limit keep going through their gate, so that lifting
        # the limit at runtime admits their waiters instead of stranding them.
        self._gated: set[str] = set()
        self.rate_limited = 0

    @classmethod
    def from_settings(cls, settings: Settings, **redis_options: Any) -> Admission:
        """In-process state, or Redis when ``redis_url`` is set (``redis_options`` go to it)."""
        backend: AdmissionBackend
        if settings.redis_url:
            from modelfleet.gateway.redis_admission import RedisBackend

            redis_options.setdefault("prefix", settings.redis_prefix)
            backend = RedisBackend(settings.redis_url, **redis_options)
        else:
            backend = InProcessBackend()
        server = settings.server
        return cls(
            backend,
            max_concurrent=server.max_concurrent_requests,
            max_queue=server.max_queue,
            queue_timeout_s=server.queue_timeout_s,
        )

    async def admit(
        self,
        *,
        model_name: str,
        limits: Limits,
        priority: int,
        key_id: str | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> Ticket:
        """Check the key's rate limits, then take the model's and the fleet's slots.

        May wait in their queues. Raises RateLimitedError (429), QueueFullError (503, at
        once) or UnavailableError ``QUEUE_TIMEOUT``; a cancelled call holds nothing.
        """
        backend = self.backend
        if key_id is not None and (rpm is not None or tpm is not None):
            try:
                if self._rates is not None:
                    self._rates.check(key_id, rpm, tpm)
                else:
                    await backend.check_rate(key_id, rpm, tpm)
            except RateLimitedError:
                self.rate_limited += 1
                raise
        token_key = key_id if tpm is not None else None
        if limits.max_concurrent is None and self._fleet is None and model_name not in self._gated:
            return Ticket(backend, (), token_key, 0.0, self._rates)
        return await self._enter_gates(model_name, limits, priority, token_key)

    async def _enter_gates(
        self, model_name: str, limits: Limits, priority: int, token_key: str | None
    ) -> Ticket:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.queue_timeout_s
        slots: list[Slot] = []
        queued = 0.0
        try:
            if limits.max_concurrent is not None or model_name in self._gated:
                self._gated.add(model_name)
                spec = GateSpec(
                    MODEL_GATE + model_name,
                    limits.max_concurrent,
                    queue_bound(limits.max_concurrent, limits.max_queue),
                )
                slot, waited = await self.backend.acquire(spec, priority, self.queue_timeout_s)
                slots.append(slot)
                queued += waited
            if self._fleet is not None:
                remaining = max(0.0, deadline - loop.time())
                slot, waited = await self.backend.acquire(self._fleet, priority, remaining)
                slots.append(slot)
                queued += waited
        except BaseException:
            for held in reversed(slots):
                await held.release()
            raise
        return Ticket(self.backend, tuple(slots), token_key, queued, self._rates)

    def stats(self) -> dict[str, Any]:
        """The fleet gate and each model's gate: running, waiting, peak_running, rejected."""
        gates = self.backend.stats()
        return {
            "backend": self.backend.name,
            "rate_limited": self.rate_limited,
            "fleet": gates.get(FLEET_GATE),
            "models": {
                name[len(MODEL_GATE):]: value
                for name, value in gates.items()
                if name.startswith(MODEL_GATE)
            },
        }

    async def close(self) -> None:
        await self.backend.close()
