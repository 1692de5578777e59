"""The metastore: live state shared by gateways and agents.

Nodes, instances, heartbeats, model assignments, start locks and an event fan-out.
``open_metastore(None)`` is the in-process backend (one gateway); a ``redis://`` URL
is the Redis backend, shared by every gateway replica and every agent of a fleet.

Records (``records.py``) are pydantic models that forbid unknown fields and bound every
string; each read validates every record, and one that fails (bad JSON, wrong fields,
over ``MAX_RECORD_BYTES``, an id that differs from its key) is skipped, counted in
``bad_records`` and logged at most once a minute per key. A poisoned key never
crashes a caller.

Redis key layout (``P`` is the prefix, ``modelfleet:`` by default):

    P node:{id}         string  a NodeRecord's JSON, with its own TTL (SET PX)
    P nodes             set     node ids; a member whose key is gone is pruned on read
    P inst:{id}         string  an InstanceRecord's JSON, with its own TTL
    P insts             set     instance ids, pruned the same way
    P assign:{node}     hash    model -> Assignment JSON (no TTL: the gateways' wish)
    P lock:{name}       string  the holder's fencing token, with the lock's TTL
    P fence:{name}      int     the last token handed out for the lock (INCR, no TTL)
    P events            channel Event JSON (pub/sub)

Semantics:

- Every node and instance has its own key and TTL, renewed by its owner's heartbeat
  (``put_*`` again); a crashed process's records expire on their own and the next
  read prunes them from the index (a Lua step that removes a member only if its key is
  still gone, so a record written meanwhile stays). Instances are filtered by model on
  read rather than kept in a per-model index: fleets hold hundreds, not millions.
- ``acquire`` hands out a fencing token (INCR of ``fence:{name}``, strictly increasing
  per lock name) only when the lock is free; ``renew``, ``release`` and
  ``put_assignment`` compare the token atomically (Lua), so a holder whose lock
  expired cannot renew, release or write an assignment. ``release`` publishes
  ``lock_released`` in the same step. Assignments publish nothing on their own: the
  writer publishes ``assignment`` when it wants agents to look.
- Events go over pub/sub, not a stream: they are hints about state that is in the
  records, so at-most-once delivery is enough, and nothing needs trimming or per-reader
  cursors. One listener per metastore fans each event out to every local subscriber
  through bounded queues (a slow one loses its oldest events). When the subscription is
  lost (a killed connection, a Redis restart) the listener re-subscribes and delivers
  a ``resync`` event: events may have been missed, read the records again.
- Redis down or hanging never hangs a caller: each command is bounded by
  ``op_timeout_s`` and raises ``MetastoreUnavailableError`` (503); ``available`` turns
  False, commands then fail at once, and a PING every second turns it True again
  (after a restart or a ``CLIENT PAUSE``). ``start`` never raises for a down Redis.

The in-process backend keeps the same semantics: expiry on the monotonic clock,
fencing tokens, validation on read, events through the same bounded fan-out.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from modelfleet.errors import ConfigError
from modelfleet.metastore.base import Metastore, MetastoreUnavailableError
from modelfleet.metastore.memory import MemoryMetastore
from modelfleet.metastore.records import Assignment, DeviceInfo, Event, InstanceRecord, NodeRecord

if TYPE_CHECKING:
    from modelfleet.metastore.redis_backend import RedisMetastore

__all__ = [
    "Assignment", "DeviceInfo", "Event", "InstanceRecord", "MemoryMetastore", "Metastore",
    "MetastoreUnavailableError", "NodeRecord", "RedisMetastore", "open_metastore",
    "parse_client_config",
]

REDIS_SCHEMES = ("redis", "rediss", "unix")
# Seed 000's client names; only the Redis one exists.
_CLIENTS = ("RedisMetastoreClient",)
_CONFIG_KEYS = {"metastore_client", "metastore_address"}
_MAX_CONFIG = 4096


def open_metastore(url: str | None, *, prefix: str = "modelfleet:",
                   op_timeout_s: float = 1.0) -> Metastore:
    """The in-process metastore for None, the Redis one for a ``redis://``,
    ``rediss://`` or ``unix://`` URL; ``ConfigError`` for anything else."""
    if url is None:
        return MemoryMetastore()
    _check_redis_url(url, "redis_url")
    if not 0 < op_timeout_s <= 60:
        raise ConfigError(f"op_timeout_s must be in (0, 60], not {op_timeout_s}")
    # Imported here: redis-py costs memory a gateway without Redis never needs.
    from modelfleet.metastore.redis_backend import RedisMetastore

    return RedisMetastore(url, prefix=prefix, op_timeout_s=op_timeout_s)


def __getattr__(name: str) -> object:
    if name == "RedisMetastore":
        from modelfleet.metastore.redis_backend import RedisMetastore

        return RedisMetastore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_client_config(text: str) -> str | None:
    """The Redis URL of seed 000's ``--metastore-client-config`` JSON, e.g.
    ``{"metastore_client": "RedisMetastoreClient", "metastore_address":
    "redis://127.0.0.1:6379/0"}``; None for blank text (the in-process metastore)."""
    flag = "--metastore-client-config"
    if not text.strip():
        return None
    if len(text) > _MAX_CONFIG:
        raise ConfigError(f"{flag} is longer than {_MAX_CONFIG} characters")
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{flag} must be a JSON object with metastore_client and "
                          "metastore_address")
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"{flag}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(sorted(_CONFIG_KEYS))}")
    client = config.get("metastore_client")
    if client not in _CLIENTS:
        raise ConfigError(f"{flag}: metastore_client {client!r} is not supported; "
                          f"use {' or '.join(_CLIENTS)}")
    address = config.get("metastore_address")
    if not isinstance(address, str):
        raise ConfigError(f"{flag}: metastore_address must be a redis:// URL")
    _check_redis_url(address, f"{flag} metastore_address")
    return address


def _check_redis_url(url: str, what: str) -> None:
    try:
        parts = urlsplit(url)
        if parts.port == 0:  # reading .port also refuses one that is not a number
            raise ValueError("port 0")
    except ValueError as exc:
        raise ConfigError(f"{what} is not a valid URL: {exc}") from None
    if len(url) > 1024 or parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(f"{what} must be a redis://, rediss:// or unix:// URL, "
                          f"not {parts.scheme or 'one without a scheme'}://…")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{what} names no host")
    if parts.scheme == "unix" and (parts.hostname or not parts.path.startswith("/")):
        raise ConfigError(f"{what} needs an absolute socket path")
