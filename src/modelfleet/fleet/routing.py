"""Choosing an instance of a model for a request: routing policies and circuit breakers.

``choose()`` is what ``ManagedModel.lease()`` calls, with the instances of one
group (all of a model's, or those of one role). It first drops the instances a
retry excludes and those whose circuit is open, then asks the model's policy
(``ModelConfig.routing``) to pick among the rest:

* ``least_outstanding``: the fewest requests in flight (the default);
* ``round_robin``: each instance in turn;
* ``power_of_two``: the less loaded of two random instances;
* ``prefix_aware``: the instance whose prefix cache holds the longest prefix of
  the prompt, as learned from where earlier prompts were sent, under a load
  bound; consistent hashing only for a prompt nothing is known of;
* ``session``: sticky by session id (``X-Session-Id``, or the body's ``user``).

A policy is created per model and kept across requests; instances come and
go (a crashed replica is replaced), so policies hold only bounded maps and
forget instances that leave.

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

# Prefix blocks: ~64 tokens each up to 16 KiB of serialised prompt, then ~256
# tokens each up to 64 KiB; a longer prompt hashes like its first 64 KiB (its
# deepest block still tells one conversation from another). The end of every
# message past the first block is a cut too, so a conversation's turn, whole,
# is a prefix of the next turn's.
BLOCK_CHARS = 256
FINE_CHARS = 16_384
COARSE_CHARS = 1_024
MAX_CHARS = 65_536
BOUNDARIES = (*range(BLOCK_CHARS, FINE_CHARS + 1, BLOCK_CHARS),
              *range(FINE_CHARS + COARSE_CHARS, MAX_CHARS + 1, COARSE_CHARS))
MAX_BLOCKS = len(BOUNDARIES)
MAX_HASHES = MAX_BLOCKS + 64  # blocks and message ends
MAP_ENTRIES = 10_000  # bound of the session → instance map
PREFIX_ENTRIES = 32_768  # bound of the prefix → holders map: ~2M tokens of blocks
HOLDERS = 8  # instances remembered per prefix block, the most recent first
GROUPS = 8  # instance groups (roles) a policy keeps a ring for
VIRTUAL_NODES = 64  # ring points per instance
LOAD_EPSILON = 0.25  # bounded-load slack: an instance may carry (1 + ε) × the average,
LOAD_SLACK = 2  # plus this many requests (see load_bound)
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
    """Cumulative hashes of the prompt at its cuts (``BOUNDARIES`` and message ends), at
    most ``MAX_HASHES``; none for a prompt shorter than a block.

    Chat: each message's role and content, serialised in order; completions:
    the prompt. Prompts that share a prefix share leading hashes, and the
    hashes of a conversation's turn are a prefix of the next turn's (where a
    cut falls depends only on the text before it). The first is blake2b's, the
    same in every process (it is where the ring places a prompt nothing is
    known of); the others chain Python's own (SipHash, seeded per process, three
    times cheaper here), so they mean something only within this process, where
    policies learn.
    """
    text, ends = _prompt_bytes(payload)
    size = len(text)
    if size < BLOCK_CHARS:
        return ()
    cuts = [*BOUNDARIES[:bisect.bisect_right(BOUNDARIES, size)],
            *(e for e in ends if e > BLOCK_CHARS)]
    cuts.sort()  # two sorted runs: a merge
    out = []
    h = start = 0
    for end in cuts:
        if end == start:
            continue  # a message that ends on a block boundary
        h = hash((h, text[start:end])) if start else _hash64(text[:end])
        out.append(h)
        if len(out) == MAX_HASHES:
            break
        start = end
    return tuple(out)


def _prompt_bytes(payload: dict[str, Any]) -> tuple[bytes, list[int]]:
    """The first ``MAX_CHARS`` bytes of the prompt, serialised (empty when there is none),
    and where its messages end in them."""
    messages = payload.get("messages")
    if isinstance(messages, list):
        parts: list[bytes] = []
        ends: list[int] = []
        size = 0
        for m in messages:
            if size >= MAX_CHARS:
                break
            if isinstance(m, dict):
                part = orjson.dumps([m.get("role"), m.get("content")]) + b"\n"
                parts.append(part)
                size += len(part)
                ends.append(size)
        return b"".join(parts)[:MAX_CHARS], [e for e in ends if e <= MAX_CHARS]
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        return prompt[:MAX_CHARS].encode(), []
    return (b"" if prompt is None else orjson.dumps(prompt)[:MAX_CHARS]), []


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
        """One of ``candidates`` (never empty; a subset of ``instances``, the group's all)."""
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
    """A consistent-hash ring of ``members`` with ``VIRTUAL_NODES`` points each."""

    def __init__(self, members: Sequence[Routable]) -> None:
        self.members = tuple(members)
        points = sorted(
            (_hash64(f"{inst.base_url}#{v}".encode()), k)
            for k, inst in enumerate(self.members) for v in range(VIRTUAL_NODES))
        self._points = [p for p, _ in points]
        self._owners = [self.members[k] for _, k in points]

    def walk(self, key: int) -> list[Routable]:
        """Distinct instances in ring order from ``key``'s position (any int: it is
        taken modulo 2**64, where the points lie)."""
        start = bisect.bisect_left(self._points, key & 0xFFFF_FFFF_FFFF_FFFF)
        seen: list[Routable] = []
        n = len(self._owners)
        for step in range(n):
            owner = self._owners[(start + step) % n]
            if owner not in seen:
                seen.append(owner)
                if len(seen) == len(self.members):
                    break
        return seen


class Rings:
    """A ring per group of instances a policy is asked about.

    A model's groups are disjoint (one per role in disaggregated serving), so a
    new group that shares an instance with a known one is that group after an
    instance came or went: it replaces it. ``ring()`` then also says which
    instances are still in some group, so the policy can forget the others.
    """

    def __init__(self) -> None:
        self._rings: dict[tuple[int, ...], Ring] = {}

    def ring(self, instances: Sequence[Routable]) -> tuple[Ring, set[int] | None]:
        """The group's ring, and the ids of every known group's instances when the
        groups changed (None when they did not)."""
        key = tuple(map(id, instances))
        ring = self._rings.get(key)
        if ring is not None:
            return ring, None
        ids = set(key)
        for old in [k for k in self._rings if ids.intersection(k)]:
            del self._rings[old]
        if len(self._rings) >= GROUPS:
            del self._rings[next(iter(self._rings))]
        ring = self._rings[key] = Ring(instances)
        return ring, {i for k in self._rings for i in k}


def load_bound(instances: Sequence[Routable]) -> int:
    """Bounded-load consistent hashing's cap: an instance already carrying this many
    requests is skipped (the average counts the request being placed).

    ``LOAD_SLACK`` is added because ε alone caps every instance at one request
    while the fleet is nearly idle: a conversation would leave the instance
    holding its history (and pay to prefill all of it again) for the sake of one
    request in flight there, which an engine batches at almost no cost.
    """
    total = sum(i.outstanding for i in instances) + 1
    return math.ceil(total / len(instances) * (1 + LOAD_EPSILON)) + LOAD_SLACK


class PrefixAware:
    """Send a prompt where the longest prefix of it is cached.

    The policy learns from its own choices: each block hash of a routed prompt
    records the chosen instance as one of its holders (``holders``: an LRU of
    prefix hash → instances, the most recent first; an instance holds what it
    was sent, as an engine's prefix cache does). A request walks its hashes
    from the deepest; the first block with a holder under the load bound
    decides, the least loaded of its holders under the bound winning. So a
    conversation's next turn goes where its earlier turns went, and a hot
    prefix (a shared system prompt) spreads: once its holders are at the bound,
    a shallower match or, failing that, the least loaded instance takes the
    request and becomes a holder too. Only a prompt none of whose blocks was
    ever routed is placed by consistent hashing of its first block, under the
    bound. A prompt too short for one block goes to the least loaded.

    Cost per request: one dict lookup per unknown deepest block until a match,
    and one LRU update per block of the prompt (``MAX_BLOCKS`` at most).
    """

    name = "prefix_aware"

    def __init__(self) -> None:
        self.rings = Rings()
        self.holders: OrderedDict[int, tuple[Routable, ...]] = OrderedDict()

    def pick(self, instances: Sequence[Routable], candidates: Sequence[Routable],
             hint: RouteHint) -> Routable:
        hashes = hint.prefix_hashes
        if not hashes:
            return least_loaded(candidates)
        ring, live = self.rings.ring(instances)
        if live is not None:
            _forget(self.holders, live)
        bound = load_bound(instances)
        chosen, known = self._longest_match(hashes, candidates, bound)
        if chosen is None:
            chosen = least_loaded(candidates) if known else \
                _first_under(ring.walk(hashes[0]), candidates, bound)
        self._learn(hashes, chosen)
        return chosen

    def _longest_match(self, hashes: tuple[int, ...], candidates: Sequence[Routable],
                       bound: int) -> tuple[Routable | None, bool]:
        """The least loaded eligible holder of the deepest block that has one, and
        whether any block of the prompt is known at all."""
        known = False
        for h in reversed(hashes):
            held = self.holders.get(h)
            if held is None:
                continue
            known = True
            best = None
            for inst in held:
                if inst.outstanding < bound and inst in candidates and (
                        best is None or inst.outstanding < best.outstanding):
                    best = inst
            if best is not None:
                return best, True
        return None, known

    def _learn(self, hashes: tuple[int, ...], chosen: Routable) -> None:
        holders = self.holders
        for h in hashes:
            held = holders.get(h)
            if held is None:
                holders[h] = (chosen,)
            else:
                if held[0] is not chosen:
                    others = [i for i in held if i is not chosen][:HOLDERS - 1]
                    holders[h] = (chosen, *others)
                holders.move_to_end(h)
        while len(holders) > PREFIX_ENTRIES:
            holders.popitem(last=False)


class Session:
    """Sticky by session id; a new session, or one whose instance is gone, open or
    excluded, is placed by consistent hashing under the load bound. A session
    keeps one instance per group (role) it was placed in."""

    name = "session"

    def __init__(self) -> None:
        self.rings = Rings()
        self.sessions: OrderedDict[str, tuple[Routable, ...]] = OrderedDict()

    def pick(self, instances: Sequence[Routable], candidates: Sequence[Routable],
             hint: RouteHint) -> Routable:
        session = hint.session
        if session is None:
            return least_loaded(candidates)
        ring, live = self.rings.ring(instances)
        if live is not None:
            _forget(self.sessions, live)
        held = self.sessions.get(session, ())
        for inst in held:
            if inst in candidates:
                self.sessions.move_to_end(session)
                return inst
        chosen = _first_under(ring.walk(_hash64(session.encode())), candidates,
                              load_bound(instances))
        others = [i for i in held if i not in instances][:GROUPS - 1]
        self.sessions[session] = (chosen, *others)
        self.sessions.move_to_end(session)
        while len(self.sessions) > MAP_ENTRIES:
            self.sessions.popitem(last=False)
        return chosen


def _forget(entries: OrderedDict[Any, tuple[Routable, ...]], live: set[int]) -> None:
    """Drop the instances that left every group (``live``: ids of those that did not)."""
    for key, held in list(entries.items()):
        kept = tuple(i for i in held if id(i) in live)
        if not kept:
            del entries[key]
        elif len(kept) != len(held):
            entries[key] = kept


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

    ``instances`` is one group of the model's instances (all, or one role's).
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
    else:  # even a lone candidate goes through the policy: prefix_aware learns from it
        chosen = cast(R, policy.pick(instances, candidates, hint))
    chosen.breaker.leased()
    return chosen


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
