"""The metastore's interface, shared by the in-process and the Redis backends.

Records live under their own key with their own TTL, so a crashed process's records
expire on their own; readers see only unexpired records that pass validation. Locks
hand out fencing tokens, strictly increasing per lock name, and an assignment is
written only while its lock is held with its token, so a holder whose lock expired
(a paused or partitioned gateway) cannot overwrite a newer holder's decision.

Every read validates each record against its schema (``records.decode``); a record
that fails is skipped, counted in ``bad_records`` and logged at most once a minute
per key: a poisoned key never crashes a caller.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from modelfleet.errors import MetastoreUnavailableError
from modelfleet.metastore.records import (
    Assignment,
    Event,
    InstanceRecord,
    NodeRecord,
    R,
    decode,
)

__all__ = ["Metastore", "MetastoreUnavailableError"]

log = logging.getLogger("modelfleet.metastore")

_WARN_EVERY_S = 60.0
_WARNED_KEYS_MAX = 4096  # keys remembered for rate-limited warnings


class Metastore(ABC):
    name: str

    def __init__(self) -> None:
        self.bad_records = 0
        self._warned: dict[str, float] = {}

    @property
    def available(self) -> bool:
        """False while the backend is known to be down."""
        return True

    @abstractmethod
    async def start(self) -> None:
        """Start background work; never raises because a backend is down."""

    @abstractmethod
    async def close(self) -> None:
        """Stop background work; every subscription ends."""

    # Nodes and instances: each under its own key with its own TTL.
    @abstractmethod
    async def put_node(self, rec: NodeRecord, ttl_s: float) -> None: ...

    @abstractmethod
    async def remove_node(self, node_id: str) -> None: ...

    @abstractmethod
    async def nodes(self) -> list[NodeRecord]: ...

    @abstractmethod
    async def put_instance(self, rec: InstanceRecord, ttl_s: float) -> None: ...

    @abstractmethod
    async def remove_instance(self, instance_id: str) -> None: ...

    @abstractmethod
    async def instances(self, model: str | None = None) -> list[InstanceRecord]:
        """Unexpired, valid instance records, of ``model`` when given."""

    # Assignments: what gateways ask each node to run.
    @abstractmethod
    async def put_assignment(self, node_id: str, a: Assignment, lock: str) -> bool:
        """Write ``a`` only while ``lock`` is held with token ``a.fence`` (checked
        atomically); False, and nothing written, when that token is stale."""

    @abstractmethod
    async def remove_assignment(self, node_id: str, model: str) -> None: ...

    @abstractmethod
    async def assignments(self, node_id: str) -> dict[str, Assignment]: ...

    # Events.
    @abstractmethod
    async def publish(self, event: Event) -> None: ...

    @abstractmethod
    def subscribe(self) -> AsyncIterator[Event]:
        """Events published from now on, by any process; ends when the metastore closes.
        Delivery is at most once: after a lost connection, a ``resync`` event says that
        events may have been missed and the records should be read again."""

    # Locks with fencing tokens.
    @abstractmethod
    async def acquire(self, lock: str, ttl_s: float) -> int | None:
        """A fencing token, greater than any earlier one of ``lock``; None while another
        holds it."""

    @abstractmethod
    async def renew(self, lock: str, token: int, ttl_s: float) -> bool: ...

    @abstractmethod
    async def release(self, lock: str, token: int) -> bool:
        """Only the holder's token releases; a release publishes ``lock_released``."""

    @abstractmethod
    async def holder(self, lock: str) -> int | None: ...

    # Helpers of both backends.
    def _decode(self, cls: type[R], raw: bytes | str, key: str) -> R | None:
        """The record stored under ``key``, or None (counted and logged) when refused."""
        try:
            return decode(cls, raw)
        except ValueError as exc:
            self._refuse(key, str(exc))
            return None

    def _refuse(self, key: str, why: str) -> None:
        self.bad_records += 1
        now = time.monotonic()
        if now - self._warned.get(key, -_WARN_EVERY_S) < _WARN_EVERY_S:
            return
        if len(self._warned) >= _WARNED_KEYS_MAX:
            self._warned.clear()
        self._warned[key] = now
        log.warning("metastore record %r refused (%s); %d refused so far",
                    key[:300], why, self.bad_records)


def ttl_ms(ttl_s: float) -> int:
    """A TTL in whole milliseconds; a TTL must be positive and at most a day."""
    if not 0 < ttl_s <= 86400:
        raise ValueError(f"ttl_s must be in (0, 86400], not {ttl_s!r}")
    return max(1, round(ttl_s * 1000))


def check_lock_name(lock: str) -> str:
    if not 0 < len(lock) <= 256:
        raise ValueError("a lock name has 1 to 256 characters")
    return lock
