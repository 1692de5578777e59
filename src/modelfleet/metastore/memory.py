"""The in-process metastore: one gateway, no Redis.

Same semantics as the Redis backend: records are stored as JSON and validated on read,
each with its own expiry on the monotonic clock (dropped when read after it); locks
hand out fencing tokens from a counter per name that survives the lock; events are
fanned out to every subscriber through bounded queues.
"""

from __future__ import annotations

import time

from modelfleet.metastore.base import Metastore, check_lock_name, ttl_ms
from modelfleet.metastore.fanout import Fanout, Subscription
from modelfleet.metastore.records import Assignment, Event, InstanceRecord, NodeRecord, encode


class _Expiring:
    """Values with an expiry each; an expired value is gone on the next look."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, bytes]] = {}

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self._items[key] = (time.monotonic() + ttl_ms(ttl_s) / 1000, value)

    def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= time.monotonic():
            del self._items[key]
            return None
        return item[1]

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def live(self) -> list[tuple[str, bytes]]:
        now = time.monotonic()
        for key in [k for k, (expires, _) in self._items.items() if expires <= now]:
            del self._items[key]
        return [(key, value) for key, (_, value) in self._items.items()]


class MemoryMetastore(Metastore):
    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self._nodes = _Expiring()
        self._insts = _Expiring()
        self._locks = _Expiring()
        self._fences: dict[str, int] = {}
        self._assign: dict[str, dict[str, bytes]] = {}
        self._fanout = Fanout()

    async def start(self) -> None:
        """Nothing runs in the background: expiry is checked on every read."""

    async def close(self) -> None:
        self._fanout.close()

    async def put_node(self, rec: NodeRecord, ttl_s: float) -> None:
        self._nodes.put(rec.id, encode(rec), ttl_s)

    async def remove_node(self, node_id: str) -> None:
        self._nodes.pop(node_id)

    async def nodes(self) -> list[NodeRecord]:
        found = (self._decode(NodeRecord, raw, f"node:{key}") for key, raw in self._nodes.live())
        return [rec for rec in found if rec is not None]

    async def put_instance(self, rec: InstanceRecord, ttl_s: float) -> None:
        self._insts.put(rec.id, encode(rec), ttl_s)

    async def remove_instance(self, instance_id: str) -> None:
        self._insts.pop(instance_id)

    async def instances(self, model: str | None = None) -> list[InstanceRecord]:
        found = (self._decode(InstanceRecord, raw, f"inst:{key}")
                 for key, raw in self._insts.live())
        return [rec for rec in found if rec is not None and model in (None, rec.model)]

    async def put_assignment(self, node_id: str, a: Assignment, lock: str) -> bool:
        raw = encode(a)
        if self._holder(lock) != a.fence:
            return False
        self._assign.setdefault(node_id, {})[a.model] = raw
        return True

    async def remove_assignment(self, node_id: str, model: str) -> None:
        held = self._assign.get(node_id, {})
        held.pop(model, None)
        if not held:
            self._assign.pop(node_id, None)

    async def assignments(self, node_id: str) -> dict[str, Assignment]:
        out = {}
        for model, raw in self._assign.get(node_id, {}).items():
            a = self._decode(Assignment, raw, f"assign:{node_id}/{model}")
            if a is not None:
                out[model] = a
        return out

    async def publish(self, event: Event) -> None:
        encode(event)  # the size bound the Redis backend applies
        self._fanout.deliver(event.model_copy(deep=True))

    def subscribe(self) -> Subscription:
        return self._fanout.subscribe()

    async def acquire(self, lock: str, ttl_s: float) -> int | None:
        check_lock_name(lock)
        ttl_ms(ttl_s)
        if self._holder(lock) is not None:
            return None
        token = self._fences[lock] = self._fences.get(lock, 0) + 1
        self._locks.put(lock, str(token).encode(), ttl_s)
        return token

    async def renew(self, lock: str, token: int, ttl_s: float) -> bool:
        ttl_ms(ttl_s)
        if self._holder(lock) != token:
            return False
        self._locks.put(lock, str(token).encode(), ttl_s)
        return True

    async def release(self, lock: str, token: int) -> bool:
        if self._holder(lock) != token:
            return False
        self._locks.pop(lock)
        await self.publish(Event(kind="lock_released", data={"lock": lock, "token": token},
                                 at=time.time()))
        return True

    async def holder(self, lock: str) -> int | None:
        return self._holder(lock)

    def _holder(self, lock: str) -> int | None:
        raw = self._locks.get(lock)
        return None if raw is None else int(raw)
