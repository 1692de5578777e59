"""Routing policies and the per-instance circuit breaker (prefix_aware and its hint:
test_routing_prefix.py)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from modelfleet.fleet import routing
from modelfleet.fleet.routing import (
    Breaker,
    BreakerState,
    LeastOutstanding,
    PowerOfTwo,
    RoundRobin,
    RouteHint,
    Session,
    choose,
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


def test_session_keeps_each_groups_sessions_when_asked_about_groups_in_turn() -> None:
    # Disaggregated serving asks one policy about each role's instances in turn:
    # neither group may make the policy forget the other's sessions.
    prefill, decode = fleet(3), [Fake(f"http://127.0.0.1:{9100 + k}") for k in range(3)]
    policy = Session()
    hints = [RouteHint(session=f"s{k}") for k in range(12)]
    homes = {(h, g): choose(policy, group, hint=h)
             for h in hints for g, group in enumerate((prefill, decode))}
    for k in range(3):  # pile load on every first choice: stickiness still wins
        for h in hints:
            for g, group in enumerate((prefill, decode)):
                assert choose(policy, group, hint=h) is homes[h, g], (k, h, g)
                homes[h, g].outstanding += 1
    assert len(policy.sessions) == 12  # one entry per session: the latest group's choice


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
