"""Choosing an instance of a model for a request: routing policies and circuit breakers.

``choose()`` is what ``ManagedModel.lease()`` calls. It first drops the
instances a retry excludes and those whose circuit is open, then asks the
model's policy (``ModelConfig.routing``) to pick among the rest:

* ``least_outstanding``: the fewest requests in flight (the default);
* ``round_robin``: each instance in turn;
* ``power_of_two``: the less loaded of two random instances;
* ``prefix_aware``: the instance that last served the longest prefix of the
  prompt (its prefix cache holds it), else consistent hashing of the prompt's
  deepest prefix hash, both under a load bound;
* ``session``: sticky by session id (``X-Session-Id``, or the body's ``user``).

A policy is created per model and kept across requests; instances come and
go (a crashed replica is replaced), so policies hold only bounded maps and
rebuild their hash ring when the set of instances changes.

Circuit breaker, one per instance (``Instance.breaker``)::

    closed ──N consecutive failures──▶ open ──cool-down──▶ half-open
      ▲                                 ▲                    │
      └──────────── success ────────────┼──── one probe ─────┤
                                        └────── failure ─────┘

Failures are the errors a retry would move away from (5xx, connection
errors), never 4xx. Each reopening doubles the cool-down, up to a cap. When
every candidate is open, the one opened longest ago is tried anyway, so the
breaker alone never makes a model unroutable.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar, cast

import orjson

BLOCK_CHARS = 256  # characters of serialised prompt per prefix hash
MAX_BLOCKS = 64  # prompts are hashed up to this many blocks, no further
MAP_ENTRIES = 10_000  # bound of the prefix → instance and session → instance maps
VIRTUAL_NODES = 64  # ring points per instance
LOAD_EPSILON = 0.25  # bounded-load slack: an instance may carry (1 + ε) × the average
FAILURE_THRESHOLD = 5
COOLDOWN_S = 10.0
MAX_COOLDOWN_S = 60.0


class Routable(Protocol):
    """What routing needs of an instance (``fleet.model.Instance`` has it)."""

    base_url: str
    outstanding: int
    breaker: Breaker


@dataclass(frozen=True, slots=True)
class RouteHint:
    """What a policy may read of a request: the prompt's cumulative prefix hashes
    (block i covers everything up to it) and a session id."""

    prefix_hashes: tuple[int, ...] = ()
    session: str | None = None


NO_HINT = RouteHint()
R = TypeVar("R", bound=Routable)


def prefix_hashes(payload: dict[str, Any]) -> tuple[int, ...]:
    """Cumulative hashes of the prompt's first ``MAX_BLOCKS`` full blocks of ``BLOCK_CHARS``.

    Chat: each message's role and content, serialised canonically in order;
    completions: the prompt. Conversations that share a prefix share leading
    hashes; a partial last block has no hash, so the hashes of a turn are a
    prefix of the next turn's.
    """
    messages = payload.get("messages")
    limit = BLOCK_CHARS * MAX_BLOCKS
    if isinstance(messages, list):
        parts: list[bytes] = []
        size = 0
        for m in messages:
            if size >= limit:
                break
            if isinstance(m, dict):
                part = orjson.dumps([m.get("role"), m.get("content")],
                                    option=orjson.OPT_SORT_KEYS) + b"\n"
                parts.append(part)
                size += len(part)
        text = b"".join(parts)[:limit]
    else:
        prompt = payload.get("prompt")
        if isinstance(prompt, str):
            text = prompt[:limit].encode()
        elif prompt is None:
            return ()
        else:
            text = orjson.dumps(prompt)[:limit]
    hasher = hashlib.blake2b(digest_size=8)
    out = []
    for start in range(0, len(text) - BLOCK_CHARS + 1, BLOCK_CHARS):
        hasher.update(text[start:start + BLOCK_CHARS])
        out.append(int.from_bytes(hasher.copy().digest(), "big"))
    return tuple(out)


# -- circuit breaker -------------------------------------------------------------


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    """One instance's circuit breaker; see the module docstring for the states.

    ``allows()`` says whether a policy may pick the instance now (an open
    breaker whose cool-down is over becomes half-open there); ``leased()``
    marks the half-open probe taken; ``record()`` takes the verdict; ``released()``
    frees a probe that ended without one (a 4xx, a timeout, a client gone).
    """

    def __init__(self, threshold: int = FAILURE_THRESHOLD, cooldown_s: float = COOLDOWN_S,
                 max_cooldown_s: float = MAX_COOLDOWN_S,
                 clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.base_cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0  # consecutive
        self.opened_at = 0.0
        self.cooldown_s = cooldown_s
        self.probing = False

    def allows(self) -> bool:
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self.clock() < self.opened_at + self.cooldown_s:
                return False
            self.state = BreakerState.HALF_OPEN
        return not self.probing

    def leased(self) -> None:
        if self.state is not BreakerState.CLOSED:
            self.probing = True

    def released(self) -> None:
        self.probing = False

    def record(self, ok: bool) -> None:
        self.probing = False
        if ok:
            self.state, self.failures, self.cooldown_s = (
                BreakerState.CLOSED, 0, self.base_cooldown_s)
            return
        self.failures += 1
        if self.state is not BreakerState.CLOSED:  # a failed probe (or forced try)
            self.cooldown_s = min(self.cooldown_s * 2, self.max_cooldown_s)
            self._open()
        elif self.failures >= self.threshold:
            self._open()

    def _open(self) -> None:
        self.state = BreakerState.OPEN
        self.opened_at = self.clock()


# -- policies ------------------------------------------------------------------------


class Policy(Protocol):
    name: str

    def pick(self, instances: Sequence[Routable], candidates: Sequence[Routable],
             hint: RouteHint) -> Routable:
        """One of ``candidates`` (never empty; a subset of ``instances``, the model's all)."""
        ...


def least_loaded(candidates: Sequence[Routable]) -> Routable:
    return min(candidates, key=lambda i: i.outstanding)


class LeastOutstanding:
    name = "least_outstanding"

    def pick(self, instances: Sequence[Routable], candidates: Sequence[Routable],
             hint: RouteHint) -> Routable:
        return least_loaded(candidates)


class RoundRobin:
    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(self, instances: Sequence[Routable], candidates: Sequence[Routable],
             hint: RouteHint) -> Routable:
        n = len(instances)
        for step in range(n):
            index = (self._next + step) % n
            if instances[index] in candidates:
                self._next = index + 1
                return instances[index]
        return candidates[0]  # not reached: candidates ⊆ instances


class PowerOfTwo:
    name = "power_of_two"

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def pick(self, instances: Sequence[Routable], candidates: Sequence[Routable],
             hint: RouteHint) -> Routable:
        if len(candidates) == 1:
            return candidates[0]
        a, b = self.rng.sample(range(len(candidates)), 2)
        first, second = candidates[a], candidates[b]
        return second if second.outstanding < first.outstanding else first


class Ring:
    """A consistent-hash ring of instances with ``VIRTUAL_NODES`` points each,
    rebuilt by ``update()`` whenever the set of instances changes."""

    def __init__(self) -> None:
        self.members: tuple[Routable, ...] = ()
        self._points: list[int] = []
        self._owners: list[Routable] = []

    def update(self, instances: Sequence[Routable]) -> bool:
        """Rebuild for ``instances`` if they differ from the last set; True when rebuilt."""
        if len(instances) == len(self.members) and all(
                a is b for a, b in zip(instances, self.members, strict=True)):
            return False
        self.members = tuple(instances)
        points = sorted(
            (_hash64(f"{inst.base_url}#{v}".encode()), k)
            for k, inst in enumerate(self.members) for v in range(VIRTUAL_NODES))
        self._points = [p for p, _ in points]
        self._owners = [self.members[k] for _, k in points]
        return True

    def walk(self, key: int) -> list[Routable]:
        """Distinct instances in ring order from ``key``'s position."""
        start = bisect.bisect_left(self._points, key)
        seen: list[Routable] = []
        n = len(self._owners)
        for step in range(n):
            owner = self._owners[(start + step) % n]
            if owner not in seen:
                seen.append(owner)
                if len(seen) == len(self.members):
                    break
        return seen


def load_bound(instances: Sequence[Routable]) -> int:
    """Bounded-load consistent hashing's cap: an instance already carrying this many
    requests is skipped (the average counts the request being placed)."""
    total = sum(i.outstanding for i in instances) + 1
    return math.ceil(total / len(instances) * (1 + LOAD_EPSILON))


class _Bounded(OrderedDict[Any, Any]):
    """An LRU map of at most ``MAP_ENTRIES`` entries."""

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > MAP_ENTRIES:
            self.popitem(last=False)

    def prune(self, keep: Collection[Any]) -> None:
        for key in [k for k, v in self.items() if v not in keep]:
            del self[key]


class PrefixAware:
    """Send a prompt where its prefix is cached.

    The instance that most recently received the longest matching prefix
    wins, as long as it is under the load bound; otherwise the deepest prefix
    hash is placed on the ring and the first instance under the bound after
    it takes the request. Every prefix hash of the request then points at the
    chosen instance. A prompt too short for one block goes to the least loaded.
    """

    name = "prefix_aware"

    def __init__(self) -> None:
        self.ring = Ring()
        self.last_served = _Bounded()  # prefix hash → instance

    def pick(self, instances: Sequence[Routable], candidates: Sequence[Routable],
             hint: RouteHint) -> Routable:
        hashes = hint.prefix_hashes
        if not hashes:
            return least_loaded(candidates)
        if self.ring.update(instances):
            self.last_served.prune(self.ring.members)
        bound = load_bound(instances)
        chosen = None
        for h in reversed(hashes):
            inst = self.last_served.get(h)
            if inst is not None:
                if inst in candidates and inst.outstanding < bound:
                    chosen = inst
                break
        if chosen is None:
            chosen = _first_under(self.ring.walk(hashes[-1]), candidates, bound)
        for h in hashes:
            self.last_served.put(h, chosen)
        return chosen


class Session:
    """Sticky by session id; a new session, or one whose instance is gone, open or
    excluded, is placed by consistent hashing under the load bound."""

    name = "session"

    def __init__(self) -> None:
        self.ring = Ring()
        self.sessions = _Bounded()  # session id → instance

    def pick(self, instances: Sequence[Routable], candidates: Sequence[Routable],
             hint: RouteHint) -> Routable:
        if hint.session is None:
            return least_loaded(candidates)
        if self.ring.update(instances):
            self.sessions.prune(self.ring.members)
        inst = self.sessions.get(hint.session)
        if inst is not None and inst in candidates:
            self.sessions.move_to_end(hint.session)
            return inst
        key = _hash64(hint.session.encode())
        chosen = _first_under(self.ring.walk(key), candidates, load_bound(instances))
        self.sessions.put(hint.session, chosen)
        return chosen


def _first_under(order: Sequence[Routable], candidates: Sequence[Routable],
                 bound: int) -> Routable:
    for inst in order:
        if inst in candidates and inst.outstanding < bound:
            return inst
    return least_loaded(candidates)  # every candidate at the bound: the least loaded


POLICIES: dict[str, Callable[[], Policy]] = {
    "least_outstanding": LeastOutstanding,
    "round_robin": RoundRobin,
    "power_of_two": PowerOfTwo,
    "prefix_aware": PrefixAware,
    "session": Session,
}


def make_policy(name: str) -> Policy:
    """The policy ``ModelConfig.routing`` names (least outstanding for an unknown name)."""
    return POLICIES.get(name, LeastOutstanding)()


def choose(policy: Policy, instances: Sequence[R], exclude: Collection[R] = (),
           hint: RouteHint = NO_HINT) -> R | None:
    """The instance for one request, or None when every instance is excluded.

    Instances with an open circuit are skipped; if that leaves none, the one
    opened longest ago is tried (it acts as a probe).
    """
    if exclude:
        instances_left = [i for i in instances if i not in exclude]
        if not instances_left:
            return None
    else:
        instances_left = list(instances)
    candidates = [i for i in instances_left if i.breaker.allows()]
    if not candidates:
        chosen = min(instances_left, key=lambda i: i.breaker.opened_at)
    elif len(candidates) == 1:
        chosen = candidates[0]
    else:
        chosen = cast(R, policy.pick(instances, candidates, hint))
    chosen.breaker.leased()
    return chosen


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
