"""prefix_aware routing and the hint it reads (``prefix_hashes``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

from modelfleet.fleet import routing
from modelfleet.fleet.routing import (
    BLOCK_CHARS,
    COARSE_CHARS,
    FINE_CHARS,
    MAX_BLOCKS,
    MAX_HASHES,
    NO_HINT,
    Breaker,
    PrefixAware,
    RouteHint,
    choose,
    load_bound,
    prefix_hashes,
)


@dataclass(eq=False)
class Fake:
    base_url: str
    outstanding: int = 0
    breaker: Breaker = field(default_factory=Breaker)


def fleet(n: int, port: int = 9000) -> list[Fake]:
    return [Fake(f"http://127.0.0.1:{port + k}") for k in range(n)]


def chat(*turns: str) -> dict:
    roles = ["system"] + ["user", "assistant"] * len(turns)
    return {"messages": [{"role": r, "content": t} for r, t in zip(roles, turns, strict=False)]}


def hint(*turns: str) -> RouteHint:
    return RouteHint(prefix_hashes(chat(*turns)))


SYSTEM = "you are the helpful assistant of a shop; answer briefly. " * 12  # ~700 characters


class Conversation:
    """A chat that grows by one user turn and one answer at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.turns = [SYSTEM]

    def next_hint(self) -> RouteHint:
        k = len(self.turns)
        self.turns += [f"answer {k} of {self.name}. " * 10, f"question {k} of {self.name}? " * 10]
        return hint(*self.turns)


def in_flight(policy: PrefixAware, insts: list[Fake], hints: list[RouteHint]) -> list[Fake]:
    """Route ``hints`` as requests that are all in flight at once, then let them end."""
    for inst in insts:
        inst.outstanding = 0
    chosen = []
    for h in hints:
        inst = choose(policy, insts, hint=h)
        assert inst is not None
        inst.outstanding += 1
        chosen.append(inst)
    for inst in insts:
        inst.outstanding = 0
    return chosen


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


def test_prefix_hashes_cut_at_message_ends() -> None:
    # A short first question ends inside the system prompt's last block: the end of
    # each message still gives the chat a hash of its own, which the next turn shares.
    system = "you are a helpful assistant " * 20  # ~570 characters
    first = prefix_hashes(chat(system, "why?"))
    other = prefix_hashes(chat(system, "how?"))
    later = prefix_hashes(chat(system, "why?", "because.", "and then?"))
    assert len(first) == 4 and first[:3] == other[:3] and first[-1] != other[-1]
    assert later[:len(first)] == first and len(later) == len(first) + 2
    # a message ending inside the first block is no cut: the first hash is always the
    # first block's (the ring's key); then the question's end (~430 characters)
    assert len(prefix_hashes(chat("be brief.", "tell me everything " * 20))) == 2


def test_prefix_hashes_cover_long_prompts_in_coarser_blocks_and_are_bounded() -> None:
    fine = FINE_CHARS // BLOCK_CHARS
    assert len(prefix_hashes({"prompt": "y" * (FINE_CHARS + 3 * COARSE_CHARS + 5)})) == fine + 3
    huge = {"messages": [{"role": "user", "content": "z" * 1000} for _ in range(200)]}
    assert MAX_BLOCKS < len(prefix_hashes(huge)) <= MAX_HASHES  # blocks and message ends
    many = {"messages": [{"role": "user", "content": "z" * 300} for _ in range(1000)]}
    assert len(prefix_hashes(many)) == MAX_HASHES
    assert len(prefix_hashes({"prompt": "z" * 10**6})) == MAX_BLOCKS
    # two long conversations that share their first 20 KiB still differ at the end
    shared = "a long shared document. " * 900  # ~21 600 characters
    one, two = (prefix_hashes(chat(shared, f"question {k} " * 200)) for k in (1, 2))
    assert one[:fine] == two[:fine] and one[-1] != two[-1]


# -- the policy ----------------------------------------------------------------------


def test_prefix_aware_keeps_a_conversation_on_one_instance() -> None:
    insts = fleet(4)
    policy = PrefixAware()
    talk = Conversation("cats")
    first = choose(policy, insts, hint=talk.next_hint())
    for _ in range(6):
        assert choose(policy, insts, hint=talk.next_hint()) is first


def test_prefix_aware_chats_sharing_a_hot_system_prompt_spread_then_stick() -> None:
    # 20 chats share one system prompt and run at once: the load bound spreads them
    # over the instances, and every later turn finds the instance of its chat.
    insts = fleet(4)
    policy = PrefixAware()
    talks = [Conversation(f"chat-{k}") for k in range(20)]
    homes = []
    for talk in talks:  # first turns, all in flight together
        home = choose(policy, insts, hint=talk.next_hint())
        assert home is not None
        home.outstanding += 1
        homes.append(home)
    counts = Counter(map(id, homes)).values()
    assert len(counts) >= 3 and max(counts) <= load_bound(insts)
    for _ in range(3):
        for inst in insts:
            inst.outstanding = 0
        for talk, home in zip(talks, homes, strict=True):  # the next turns, again at once
            assert choose(policy, insts, hint=talk.next_hint()) is home, talk.name
            home.outstanding += 1


def test_prefix_aware_keeps_a_conversation_home_while_the_fleet_is_nearly_idle() -> None:
    # Two requests in flight on the chat's instance, none elsewhere: (1 + ε) × the
    # average alone would be a cap of one and send the chat away from its history.
    insts = fleet(4)
    policy = PrefixAware()
    talk = Conversation("quiet")
    home = choose(policy, insts, hint=talk.next_hint())
    assert home is not None
    home.outstanding = 2
    assert choose(policy, insts, hint=talk.next_hint()) is home


def test_prefix_aware_chats_with_short_turns_stick_too() -> None:
    # The chats differ only in a short first question after a long shared system
    # prompt; they start at once (so they spread), and each keeps its instance.
    insts = fleet(3)
    policy = PrefixAware()
    chats = [[SYSTEM, f"chat {k}: why?"] for k in range(9)]
    homes = in_flight(policy, insts, [hint(*c) for c in chats])
    assert len(set(homes)) >= 2
    for turn in range(3):
        for c in chats:
            c += [f"because {turn}.", f"and {turn}?"]
        assert in_flight(policy, insts, [hint(*c) for c in chats]) == homes


def test_prefix_aware_load_bound_spreads_a_hot_prefix() -> None:
    insts = fleet(4)
    policy = PrefixAware()
    hot = RouteHint(prefix_hashes({"prompt": "hot " * 200}))
    for _ in range(40):  # all in flight at once: the hot prefix must not pile up
        chosen = choose(policy, insts, hint=hot)
        assert chosen is not None
        chosen.outstanding += 1
    loads = sorted(i.outstanding for i in insts)
    assert loads[-1] <= load_bound(insts) and loads[-3] >= 5
    assert sum(loads) == 40
    # the instances it spread to hold it now, and share it while under the bound
    assert len(policy.holders[hot.prefix_hashes[-1]]) == sum(1 for n in loads if n)


def test_prefix_aware_over_the_bound_prefers_a_holder_of_a_shorter_prefix() -> None:
    insts = fleet(4)
    policy = PrefixAware()
    talk = Conversation("long")
    home = choose(policy, insts, hint=talk.next_hint())
    assert home is not None
    # Over the bound, ``home`` cannot take a new chat with the same system prompt: it
    # spills to the least loaded instance (the ring's choice is left busier), which
    # now holds the system prompt too.
    other = Conversation("other").next_hint()
    ring, _ = policy.rings.ring(insts)
    by_ring = [i for i in ring.walk(other.prefix_hashes[0]) if i is not home]
    for load, inst in zip((2, 1, 0), by_ring, strict=True):
        inst.outstanding = load
    home.outstanding = 10
    spill = choose(policy, insts, hint=other)
    assert spill is by_ring[2]
    # ``home`` still over the bound: the chat's next turn goes to the other holder of its
    # system prompt, under the bound though busier than instances that hold nothing of it.
    for inst in by_ring:
        inst.outstanding = 0
    spill.outstanding = 2
    assert spill.outstanding < load_bound(insts)
    assert choose(policy, insts, hint=talk.next_hint()) is spill
    home.outstanding = spill.outstanding = 0  # the history is on ``spill`` now: it stays
    assert choose(policy, insts, hint=talk.next_hint()) is spill


def test_prefix_aware_consults_the_ring_only_for_unseen_prompts() -> None:
    insts = fleet(4)
    policy = PrefixAware()
    prompts = [RouteHint(prefix_hashes({"prompt": f"document {k} " * 60})) for k in range(8)]
    placed = [choose(policy, insts, hint=h) for h in prompts]
    ring, changed = policy.rings.ring(insts)
    assert changed is None  # the ring built for the first prompt
    assert placed == [ring.walk(h.prefix_hashes[0])[0] for h in prompts]
    # The ring's choice is full: a prompt is placed on the next instance along the ring,
    # and is then learned there; the ring's first choice does not take it back.
    target = prompts[0]
    first, second = ring.walk(target.prefix_hashes[0])[:2]
    fresh = PrefixAware()
    first.outstanding = 10
    assert choose(fresh, insts, hint=target) is second
    first.outstanding = 0
    assert choose(fresh, insts, hint=target) is second


def test_prefix_aware_spreads_unrelated_prompts_over_the_ring() -> None:
    insts = fleet(4)
    policy = PrefixAware()
    picks = Counter(
        id(choose(policy, insts, hint=RouteHint(prefix_hashes({"prompt": f"{k} " * 200}))))
        for k in range(200))
    assert len(picks) == 4 and min(picks.values()) > 20


def test_prefix_aware_learns_from_a_retry_on_the_one_instance_left() -> None:
    insts = fleet(3)
    policy = PrefixAware()
    talk = Conversation("retried")
    home = choose(policy, insts, hint=talk.next_hint())
    other = next(i for i in insts if i is not home)
    rest = [i for i in insts if i is not other]
    assert choose(policy, insts, exclude=rest, hint=talk.next_hint()) is other
    assert choose(policy, insts, hint=talk.next_hint()) is other


def test_prefix_aware_without_a_hint_is_least_outstanding() -> None:
    a, b = fleet(2)
    a.outstanding = 2
    assert choose(PrefixAware(), [a, b], hint=NO_HINT) is b


def test_prefix_aware_remaps_a_removed_instances_prefixes() -> None:
    insts = fleet(3)
    policy = PrefixAware()
    talks = [Conversation(f"doc-{k}") for k in range(30)]
    before = in_flight(policy, insts, [t.next_hint() for t in talks])
    gone = insts[1]
    assert sum(old is gone for old in before) >= 3  # the case below is exercised
    now = [insts[0], insts[2], Fake("http://127.0.0.1:9999")]
    after = [choose(policy, now, hint=t.next_hint()) for t in talks]
    assert all(gone is not held for holders in policy.holders.values() for held in holders)
    for talk, old, new in zip(talks, before, after, strict=True):
        if old is not gone:
            assert new is old, talk.name  # chats elsewhere keep their caches
        else:
            assert new is not gone
            assert choose(policy, now, hint=talk.next_hint()) is new  # and stick there


def test_prefix_aware_keeps_what_it_learned_when_asked_about_groups_in_turn() -> None:
    # Disaggregated serving asks one policy about each role's instances in turn.
    prefill, decode = fleet(3), fleet(3, port=9100)
    policy = PrefixAware()
    talks = [Conversation(f"chat-{k}") for k in range(9)]
    hints = [t.next_hint() for t in talks]
    homes = list(zip(in_flight(policy, prefill, hints), in_flight(policy, decode, hints),
                     strict=True))
    assert len(set(homes)) >= 2  # spread by the load bound: stickiness is put to the test
    for _ in range(3):
        for talk, home in zip(talks, homes, strict=True):
            h = talk.next_hint()
            assert (choose(policy, prefill, hint=h), choose(policy, decode, hint=h)) == home
    assert policy.rings.ring(prefill)[1] is None and policy.rings.ring(decode)[1] is None


def test_prefix_aware_holders_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "PREFIX_ENTRIES", 50)
    insts = fleet(2)
    policy = PrefixAware()
    for k in range(40):
        choose(policy, insts, hint=RouteHint(prefix_hashes({"prompt": f"p{k} " * 300})))
    assert len(policy.holders) == 50
