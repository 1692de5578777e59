"""Routing policies, the hint they read, and the per-instance circuit breaker."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from modelfleet.fleet import routing
from modelfleet.fleet.routing import (
    BLOCK_CHARS,
    MAX_BLOCKS,
    NO_HINT,
    Breaker,
    BreakerState,
    LeastOutstanding,
    PowerOfTwo,
    PrefixAware,
    RoundRobin,
    RouteHint,
    Session,
    choose,
    load_bound,
    make_policy,
    prefix_hashes,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class Fake:
    base_url: str
    outstanding: int = 0
    breaker: Breaker = field(default_factory=Breaker)


def fleet(n: int, clock: Clock | None = None) -> list[Fake]:
    return [Fake(f"http://127.0.0.1:{9000 + k}",
                 breaker=Breaker(clock=clock) if clock else Breaker()) for k in range(n)]


def chat(*turns: str) -> dict:
    roles = ["system"] + ["user", "assistant"] * len(turns)
    return {"messages": [{"role": r, "content": t} for r, t in zip(roles, turns, strict=False)]}


# -- the hint ---------------------------------------------------------------------


def test_prefix_hashes_are_cumulative_and_shared_by_a_common_prefix() -> None:
    system = "you are a helpful assistant " * 40  # ~1100 characters: 4 blocks
    first = prefix_hashes(chat(system, "what is a cat? " * 30))
    later = prefix_hashes(chat(system, "what is a cat? " * 30, "a small animal " * 30))
    other = prefix_hashes(chat(system, "how do planes fly? " * 30))
    assert len(first) >= 5 and later[:len(first)] == first
    shared = next(k for k, (a, b) in enumerate(zip(first, other, strict=False)) if a != b)
    assert shared >= 4  # the system prompt's blocks are common, the question's are not
    assert len(set(first)) == len(first)  # cumulative: block i differs from block j


def test_prefix_hashes_role_matters_and_short_prompts_have_none() -> None:
    text = "x " * 300
    user = prefix_hashes({"messages": [{"role": "user", "content": text}]})
    assistant = prefix_hashes({"messages": [{"role": "assistant", "content": text}]})
    assert user and user[0] != assistant[0]
    assert prefix_hashes(chat("hi")) == ()
    assert prefix_hashes({"prompt": "short"}) == ()
    assert len(prefix_hashes({"prompt": "y" * (BLOCK_CHARS * 3 + 10)})) == 3
    assert len(prefix_hashes({"prompt": [1, 2, 3] * 400})) > 0


def test_prefix_hashes_are_bounded() -> None:
    huge = {"messages": [{"role": "user", "content": "z" * 1000} for _ in range(200)]}
    assert len(prefix_hashes(huge)) == MAX_BLOCKS
    assert len(prefix_hashes({"prompt": "z" * 10**6})) == MAX_BLOCKS


# -- policies ---------------------------------------------------------------------------


def test_least_outstanding_picks_the_least_loaded() -> None:
    a, b, c = fleet(3)
    a.outstanding, b.outstanding, c.outstanding = 3, 1, 2
    assert choose(LeastOutstanding(), [a, b, c]) is b
    assert choose(LeastOutstanding(), [a, b, c], exclude=[b]) is c
    assert choose(LeastOutstanding(), [a, b, c], exclude=[a, b, c]) is None


def test_make_policy_follows_the_config_name() -> None:
    for name in ("least_outstanding", "round_robin", "power_of_two", "prefix_aware", "session"):
        assert make_policy(name).name == name
    assert make_policy("unknown").name == "least_outstanding"


def test_round_robin_cycles_and_skips_excluded_and_open() -> None:
    insts = fleet(3)
    policy = RoundRobin()
    assert [choose(policy, insts) for _ in range(6)] == insts * 2
    insts[1].breaker.state = BreakerState.OPEN
    insts[1].breaker.opened_at = 1e18  # far from cooling down
    assert [choose(policy, insts) for _ in range(4)] == [insts[0], insts[2]] * 2
    assert choose(policy, insts, exclude=[insts[0]]) is insts[2]


def test_power_of_two_takes_the_less_loaded_of_two() -> None:
    insts = fleet(4)
    for k, inst in enumerate(insts):
        inst.outstanding = k * 10
    policy = PowerOfTwo(random.Random(7))
    picks = Counter(id(choose(policy, insts)) for _ in range(400))
    assert id(insts[3]) not in picks  # the most loaded always loses its pair
    assert picks[id(insts[0])] > picks[id(insts[1])] > picks[id(insts[2])] > 0


def test_prefix_aware_keeps_a_conversation_on_one_instance() -> None:
    insts = fleet(4)
    policy = PrefixAware()
    system = "shared system prompt " * 20
    turns = ["question one " * 30]
    first = choose(policy, insts, hint=RouteHint(prefix_hashes(chat(system, *turns))))
    for k in range(5):
        turns += [f"answer {k} " * 30, f"question {k} " * 30]
        hint = RouteHint(prefix_hashes(chat(system, *turns)))
        assert choose(policy, insts, hint=hint) is first


def test_prefix_aware_spreads_unrelated_prompts_over_the_ring() -> None:
    insts = fleet(4)
    policy = PrefixAware()
    picks = Counter(
        id(choose(policy, insts, hint=RouteHint(prefix_hashes({"prompt": f"{k} " * 200}))))
        for k in range(200))
    assert len(picks) == 4 and min(picks.values()) > 20


def test_prefix_aware_load_bound_spreads_a_hot_prefix() -> None:
    insts = fleet(4)
    policy = PrefixAware()
    hint = RouteHint(prefix_hashes({"prompt": "hot " * 200}))
    for _ in range(40):  # all in flight at once: the hot prefix must not pile up
        choose(policy, insts, hint=hint).outstanding += 1
    loads = sorted(i.outstanding for i in insts)
    assert loads[-1] <= load_bound(insts) and loads[0] >= 5
    assert sum(loads) == 40


def test_prefix_aware_without_a_hint_is_least_outstanding() -> None:
    a, b = fleet(2)
    a.outstanding = 2
    assert choose(PrefixAware(), [a, b], hint=NO_HINT) is b


def test_ring_is_rebuilt_when_instances_change() -> None:
    insts = fleet(3)
    policy = PrefixAware()
    hints = [RouteHint(prefix_hashes({"prompt": f"doc {k} " * 100})) for k in range(60)]
    before = {h: choose(policy, insts, hint=h) for h in hints}
    gone = insts[1]
    replacement = Fake("http://127.0.0.1:9999")
    now = [insts[0], insts[2], replacement]
    after = {h: choose(policy, now, hint=h) for h in hints}
    assert policy.ring.members == tuple(now)
    assert gone not in after.values() and replacement in after.values()
    # consistent hashing: prompts that were not on the removed instance stay put
    assert all(after[h] is before[h] for h in hints if before[h] is not gone)
    assert gone not in policy.last_served.values()


def test_session_sticks_and_rehashes_when_its_instance_leaves() -> None:
    insts = fleet(3)
    policy = Session()
    hint = RouteHint(session="user-42")
    home = choose(policy, insts, hint=hint)
    assert home is not None
    home.outstanding = 5  # stickiness wins over load
    assert all(choose(policy, insts, hint=hint) is home for _ in range(10))
    assert choose(policy, insts, exclude=[home], hint=hint) is not home
    left = [i for i in insts if i is not home]
    moved = choose(policy, left, hint=hint)
    assert moved in left
    assert choose(policy, left, hint=hint) is moved
    assert choose(policy, insts, hint=RouteHint(session="new")) is not home  # over the bound
    home.outstanding = 0
    sessions = Counter(id(choose(policy, insts, hint=RouteHint(session=f"s{k}")))
                       for k in range(90))
    assert len(sessions) == 3


def test_session_without_an_id_is_least_outstanding() -> None:
    a, b = fleet(2)
    b.outstanding = 1
    assert choose(Session(), [a, b]) is a


def test_policy_maps_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "MAP_ENTRIES", 50)
    insts = fleet(2)
    policy = Session()
    for k in range(200):
        choose(policy, insts, hint=RouteHint(session=f"s{k}"))
    assert len(policy.sessions) == 50


# -- circuit breaker ----------------------------------------------------------------------


def test_breaker_opens_after_n_failures_and_half_opens_after_cool_down() -> None:
    clock = Clock()
    b = Breaker(threshold=3, cooldown_s=10, clock=clock)
    b.record(False)
    b.record(False)
    b.record(True)  # a success resets the count: failures must be consecutive
    for _ in range(2):
        b.record(False)
    assert b.state is BreakerState.CLOSED and b.allows()
    b.record(False)
    assert b.state is BreakerState.OPEN and not b.allows()
    clock.now += 9.9
    assert not b.allows()
    clock.now += 0.2
    assert b.allows() and b.state is BreakerState.HALF_OPEN
    b.leased()
    assert not b.allows()  # exactly one probe
    b.record(True)
    assert b.state is BreakerState.CLOSED and b.allows()


def test_breaker_failed_probe_reopens_with_a_doubled_cool_down() -> None:
    clock = Clock()
    b = Breaker(threshold=1, cooldown_s=10, max_cooldown_s=25, clock=clock)
    b.record(False)
    for expected in (20, 25, 25):
        clock.now += b.cooldown_s
        assert b.allows()
        b.leased()
        b.record(False)
        assert b.state is BreakerState.OPEN and b.cooldown_s == expected
    clock.now += 25
    assert b.allows()
    b.leased()
    b.record(True)
    assert b.cooldown_s == 10  # closed again: the next opening starts from the base


def test_breaker_probe_without_a_verdict_is_released() -> None:
    clock = Clock()
    b = Breaker(threshold=1, cooldown_s=1, clock=clock)
    b.record(False)
    clock.now += 1
    assert b.allows()
    b.leased()
    assert not b.allows()
    b.released()  # e.g. the probe got a 4xx or the client left
    assert b.allows() and b.state is BreakerState.HALF_OPEN


def test_open_instances_are_skipped_by_every_policy() -> None:
    clock = Clock()
    for name in routing.POLICIES:
        insts = fleet(3, clock)
        for _ in range(routing.FAILURE_THRESHOLD):
            insts[0].breaker.record(False)
        policy = make_policy(name)
        hints = [RouteHint(prefix_hashes({"prompt": f"p{k} " * 200}), session=f"s{k}")
                 for k in range(30)]
        assert all(choose(policy, insts, hint=h) is not insts[0] for h in hints), name


def test_all_open_falls_back_to_the_least_recently_opened() -> None:
    clock = Clock()
    insts = fleet(3, clock)
    for k in (2, 0, 1):  # opened in this order
        clock.now += 1
        for _ in range(routing.FAILURE_THRESHOLD):
            insts[k].breaker.record(False)
    policy = RoundRobin()
    assert choose(policy, insts) is insts[2]
    insts[2].breaker.released()
    assert choose(policy, insts, exclude=[insts[2]]) is insts[0]
    insts[0].breaker.record(False)  # the forced try failed: reopened, now the newest
    assert choose(policy, insts) is insts[2]
    insts[2].breaker.record(True)  # a forced try that succeeds closes the circuit
    assert insts[2].breaker.state is BreakerState.CLOSED
    assert choose(policy, insts) is insts[2]
