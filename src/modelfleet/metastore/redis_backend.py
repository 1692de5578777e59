"""The Redis metastore: shared by every gateway and agent of a fleet.

Key layout and semantics are in the package docstring (``modelfleet.metastore``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from typing import Any

from modelfleet.errors import InvalidRequestError
from modelfleet.metastore import redis_scripts as lua
from modelfleet.metastore.base import Metastore, check_lock_name, ttl_ms
from modelfleet.metastore.fanout import Fanout, Subscription
from modelfleet.metastore.records import (
    Assignment,
    Event,
    InstanceRecord,
    NodeRecord,
    R,
    encode,
)
from modelfleet.metastore.redis_conn import REDIS_ERRORS, RedisConn

log = logging.getLogger("modelfleet.metastore")

MAX_INDEX = 10_000  # members read from one index; more means something writes garbage
_CHUNK = 500  # keys per MGET
_MEMBER_MAX = 256  # bytes; no valid id is longer
_NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_INSTANCE_ID = re.compile(r"[A-Za-z0-9._:/@-]{1,200}")


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise InvalidRequestError(f"invalid {what}: {value[:100]!r}", param=what)
    return value


def _as_bytes(value: bytes | str) -> bytes:
    # The client never decodes responses; a str here would only come from a changed client.
    return value if isinstance(value, bytes) else value.encode()


class RedisMetastore(Metastore):
    name = "redis"

    def __init__(self, url: str, *, prefix: str = "modelfleet:", op_timeout_s: float = 1.0):
        super().__init__()
        self.prefix = prefix
        self.channel = f"{prefix}events"
        self.conn = RedisConn(url, op_timeout_s=op_timeout_s)
        self.conn.came_back = self._came_back
        redis = self.redis = self.conn.redis
        self._acquire = redis.register_script(lua.ACQUIRE)
        self._renew = redis.register_script(lua.RENEW)
        self._release = redis.register_script(lua.RELEASE)
        self._put_assignment = redis.register_script(lua.PUT_ASSIGNMENT)
        self._prune = redis.register_script(lua.PRUNE)
        self._fanout = Fanout()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._resubscribe = False
        self._subscribed = asyncio.Event()
        self._subscribed_at = 0.0

    @property
    def available(self) -> bool:
        return self.conn.up

    @property
    def listening(self) -> bool:
        """True while this metastore's subscription to the events channel is live."""
        return self._subscribed.is_set()

    async def start(self) -> None:
        """Check Redis once, then keep checking and listening in the background. Waits
        (at most ``op_timeout_s``) for the subscription, so that events published after
        ``start`` reach subscribers; never raises because Redis is down."""
        if self._tasks or self._closing:
            return
        await self.conn.check()
        self._tasks = [asyncio.create_task(self.conn.check_forever(), name="metastore-check"),
                       asyncio.create_task(self._listen(), name="metastore-listen")]
        if self.conn.up:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.conn.op_timeout_s):
                    await self._subscribed.wait()

    async def close(self) -> None:
        self._closing = True
        self._fanout.close()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # The listener also stops on its flag within a second if redis-py eats the cancel.
            await asyncio.wait(self._tasks, timeout=2.0)
        self._tasks = []
        await self.conn.close()

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # Nodes and instances.
    async def put_node(self, rec: NodeRecord, ttl_s: float) -> None:
        await self._put_record("node", "nodes", rec.id, encode(rec), ttl_s)

    async def remove_node(self, node_id: str) -> None:
        await self._remove_record("node", "nodes", _check(node_id, _NODE_ID, "node_id"))

    async def nodes(self) -> list[NodeRecord]:
        return await self._read_index("node", "nodes", NodeRecord)

    async def put_instance(self, rec: InstanceRecord, ttl_s: float) -> None:
        await self._put_record("inst", "insts", rec.id, encode(rec), ttl_s)

    async def remove_instance(self, instance_id: str) -> None:
        await self._remove_record("inst", "insts",
                                  _check(instance_id, _INSTANCE_ID, "instance_id"))

    async def instances(self, model: str | None = None) -> list[InstanceRecord]:
        found = await self._read_index("inst", "insts", InstanceRecord)
        return [rec for rec in found if model in (None, rec.model)]

    async def _put_record(self, kind: str, index: str, id_: str, raw: bytes,
                          ttl_s: float) -> None:
        def run() -> Any:
            # The key first, then the index: see PRUNE for why the order matters.
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(self._key(kind, id_), raw, px=ttl_ms(ttl_s))
            pipe.sadd(self._key(index), id_)
            return pipe.execute()

        ttl_ms(ttl_s)
        await self.conn.call(run)

    async def _remove_record(self, kind: str, index: str, id_: str) -> None:
        def run() -> Any:
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(self._key(kind, id_))
            pipe.srem(self._key(index), id_)
            return pipe.execute()

        await self.conn.call(run)

    async def _read_index(self, kind: str, index: str, cls: type[R]) -> list[R]:
        """Every valid record an index names; members whose key is gone are pruned."""
        index_key = self._key(index)
        members = sorted(_as_bytes(m) for m in await self.conn.call(
            functools.partial(self.redis.smembers, index_key)))
        garbage = [m for m in members if len(m) > _MEMBER_MAX]
        if garbage:
            for member in garbage:
                self._refuse(f"{index_key} member {member[:64]!r}…", "over the id bound")
            await self.conn.call(functools.partial(self.redis.srem, index_key, *garbage))
            members = [m for m in members if len(m) <= _MEMBER_MAX]
        if len(members) > MAX_INDEX:
            self._refuse(index_key, f"{len(members)} members; only {MAX_INDEX} are read")
            members = members[:MAX_INDEX]
        prefix = self._key(kind, "").encode()
        keys = [prefix + m for m in members]
        values: list[bytes | None] = []
        for at in range(0, len(keys), _CHUNK):
            chunk = await self.conn.call(functools.partial(self.redis.mget, keys[at:at + _CHUNK]))
            values += [None if v is None else _as_bytes(v) for v in chunk]
        gone = [(m, k) for m, k, v in zip(members, keys, values, strict=True) if v is None]
        if gone:
            await self.conn.call(functools.partial(
                self._prune, keys=[index_key, *(k for _, k in gone)], args=[m for m, _ in gone]))
        out: list[R] = []
        for member, key, raw in zip(members, keys, values, strict=True):
            if raw is None:
                continue
            rec = self._decode(cls, raw, key.decode(errors="replace"))
            if rec is None:
                continue
            if getattr(rec, "id", None) != member.decode(errors="replace"):
                self._refuse(key.decode(errors="replace"), "its id differs from its key")
                continue
            out.append(rec)
        return out

    # Assignments.
    async def put_assignment(self, node_id: str, a: Assignment, lock: str) -> bool:
        keys = [self._key("lock", check_lock_name(lock)),
                self._key("assign", _check(node_id, _NODE_ID, "node_id"))]
        done = await self.conn.call(functools.partial(
            self._put_assignment, keys=keys, args=[str(a.fence), a.model, encode(a)]))
        return bool(done)

    async def remove_assignment(self, node_id: str, model: str) -> None:
        key = self._key("assign", _check(node_id, _NODE_ID, "node_id"))
        await self.conn.call(functools.partial(self.redis.hdel, key, model))

    async def assignments(self, node_id: str) -> dict[str, Assignment]:
        key = self._key("assign", _check(node_id, _NODE_ID, "node_id"))
        stored = await self.conn.call(functools.partial(self.redis.hgetall, key))
        out = {}
        for field, raw in sorted((_as_bytes(f), v) for f, v in stored.items()):
            model = field.decode(errors="replace")
            a = self._decode(Assignment, raw, f"{key}/{model[:200]}")
            if a is None:
                continue
            if a.model != model:
                self._refuse(f"{key}/{model[:200]}", "its model differs from its field")
                continue
            out[model] = a
        return out

    # Events: one pub/sub channel, listened to by one task per metastore.
    async def publish(self, event: Event) -> None:
        raw = encode(event)
        await self.conn.call(functools.partial(self.redis.publish, self.channel, raw))

    def subscribe(self) -> Subscription:
        return self._fanout.subscribe()

    def _came_back(self) -> None:
        # A subscription older than the outage may be dead without knowing it (a network
        # cut sends no reset): make a new one, which announces the resync.
        if self._subscribed_at < self.conn.down_at:
            self._resubscribe = True

    async def _listen(self) -> None:
        """Deliver the channel's events to every subscription, re-subscribing after any
        loss (a killed connection, a restart) and then announcing a ``resync``."""
        lost, failures = False, 0
        while not self._closing:
            try:
                async with self.conn.sub_redis.pubsub() as pubsub:
                    await self._subscribe(pubsub)
                    failures = 0
                    if lost:
                        self._fanout.deliver(Event(kind="resync", source="metastore",
                                                   at=time.time()))
                    while not self._closing and not self._resubscribe:
                        msg = await pubsub.get_message(ignore_subscribe_messages=True,
                                                       timeout=1.0)
                        if msg is not None and msg["type"] == "message":
                            self._receive(msg["data"])
            except REDIS_ERRORS as exc:
                if failures == 0:
                    log.info("metastore: event subscription lost (%s: %s); re-subscribing",
                             type(exc).__name__, exc)
                failures += 1
            finally:
                self._subscribed.clear()
                lost = True
            if not self._closing:
                # The first retry soon (a killed connection), then every second.
                await asyncio.sleep(0.1 if failures <= 1 else 1.0)

    async def _subscribe(self, pubsub: Any) -> None:
        """Subscribe and wait for Redis to confirm (at most ``op_timeout_s``)."""
        await pubsub.subscribe(self.channel)
        deadline = time.monotonic() + self.conn.op_timeout_s
        while (left := deadline - time.monotonic()) > 0:
            msg = await pubsub.get_message(timeout=left)
            if msg is not None and msg["type"] == "subscribe":
                self._subscribed_at = time.monotonic()
                self._resubscribe = False  # this subscription is newer than any outage
                self._subscribed.set()
                return
        raise TimeoutError("no subscribe confirmation")

    def _receive(self, raw: bytes) -> None:
        event = self._decode(Event, raw, self.channel)
        if event is not None:
            self._fanout.deliver(event)

    # Locks with fencing tokens.
    async def acquire(self, lock: str, ttl_s: float) -> int | None:
        keys = [self._key("lock", check_lock_name(lock)), self._key("fence", lock)]
        token = await self.conn.call(functools.partial(
            self._acquire, keys=keys, args=[ttl_ms(ttl_s)]))
        return None if token is None else int(token)

    async def renew(self, lock: str, token: int, ttl_s: float) -> bool:
        done = await self.conn.call(functools.partial(
            self._renew, keys=[self._key("lock", check_lock_name(lock))],
            args=[str(token), ttl_ms(ttl_s)]))
        return bool(done)

    async def release(self, lock: str, token: int) -> bool:
        event = Event(kind="lock_released", data={"lock": lock, "token": token}, at=time.time())
        done = await self.conn.call(functools.partial(
            self._release, keys=[self._key("lock", check_lock_name(lock))],
            args=[str(token), self.channel, encode(event)]))
        return bool(done)

    async def holder(self, lock: str) -> int | None:
        key = self._key("lock", check_lock_name(lock))
        raw = await self.conn.call(functools.partial(self.redis.get, key))
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            self._refuse(key, "not a token")
            return None
