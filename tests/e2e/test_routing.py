"""Routing policies and the circuit breaker, against real simulator engine processes."""

from collections.abc import Iterator

import pytest

from modelfleet.fleet.routing import FAILURE_THRESHOLD
from tests.helpers import Gateway, simulator_model, start_gateway

GPUS = [{"id": f"cuda:{i}", "memory_mb": 1000} for i in range(2)]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("routing")
    # "flaky": two instances on two (declared) GPUs; the one on cuda:0 always answers 500.
    flaky_profiles = [
        {"name": "bad", "devices": ["cuda:0"], "args": {"error_rate": 1.0, "error_status": 500}},
        {"name": "good", "devices": ["cuda:1"]},
    ]
    gateway = start_gateway(tmp, [
        simulator_model("pa", replicas=3, routing="prefix_aware",
                        args={"prefill_ms_per_token": 2}),
        simulator_model("rr", replicas=3, routing="round_robin"),
        simulator_model("sess", replicas=3, routing="session"),
        simulator_model("flaky", replicas=2, routing="round_robin", profiles=flaky_profiles,
                        resource_requirements={"gpu_memory": 800}),
    ], devices=GPUS)
    yield gateway
    gateway.stop()


def served(gw: Gateway, model: str) -> dict[str, int]:
    return {i["address"]: i["served"] for i in gw.info(model)["instances"]}


def delta(before: dict[str, int], after: dict[str, int]) -> list[int]:
    return sorted(after[k] - before.get(k, 0) for k in after)


def test_routing_prefix_aware_lands_each_conversation_on_its_cache(gw: Gateway) -> None:
    client = gw.client()
    conversations = {
        name: [{"role": "system", "content": f"you are the {name} assistant; " * 25}]
        for name in ("astronomy", "cooking")
    }
    previous = dict.fromkeys(conversations, 0)
    for turn in range(4):
        for name, messages in conversations.items():
            messages.append({"role": "user",
                             "content": f"tell me about {name} topic {turn} " * 8})
            resp = client.chat.completions.create(model="pa", messages=messages, max_tokens=8)
            usage = resp.usage
            assert usage is not None
            cached = usage.prompt_tokens_details.cached_tokens if \
                usage.prompt_tokens_details else 0
            if turn == 0:
                assert not cached
            else:  # the previous turn's whole prompt (its full blocks) was in this cache
                assert cached and cached >= previous[name] - 16, (name, turn)
            previous[name] = usage.prompt_tokens
            messages.append({"role": "assistant", "content": resp.choices[0].message.content})
    # unrelated prompts are spread over the instances, not piled on one
    before = served(gw, "pa")
    for k in range(12):
        client.completions.create(model="pa", prompt=f"document {k} " * 120, max_tokens=1)
    spread = delta(before, served(gw, "pa"))
    assert sum(spread) == 12 and spread[-1] < 12


def test_routing_round_robin_spreads_evenly(gw: Gateway) -> None:
    client = gw.client()
    client.completions.create(model="rr", prompt="warm", max_tokens=1)
    before = served(gw, "rr")
    for _ in range(9):
        client.completions.create(model="rr", prompt="x", max_tokens=1)
    assert delta(before, served(gw, "rr")) == [3, 3, 3]


def test_routing_session_sticks_by_header_and_by_user(gw: Gateway) -> None:
    client = gw.client()
    client.completions.create(model="sess", prompt="warm", max_tokens=1)
    for session in ("alice", "bob", "carol"):
        before = served(gw, "sess")
        for _ in range(5):
            client.completions.create(model="sess", prompt="x", max_tokens=1,
                                      extra_headers={"X-Session-Id": session})
        assert delta(before, served(gw, "sess")) == [0, 0, 5], session
    before = served(gw, "sess")
    for _ in range(4):
        client.chat.completions.create(model="sess", messages=[{"role": "user", "content": "x"}],
                                       max_tokens=1, user="dave")
    assert delta(before, served(gw, "sess")) == [0, 0, 4]


def test_routing_breaker_skips_a_failing_instance(gw: Gateway) -> None:
    client = gw.client()
    for _ in range(4 * FAILURE_THRESHOLD):
        resp = client.completions.create(model="flaky", prompt="x", max_tokens=2)
        assert resp.choices[0].text == "alpha bravo"
    counts = sorted(served(gw, "flaky").values())
    # Round robin offers the bad instance every other pick until its circuit opens
    # after FAILURE_THRESHOLD failures (each retried on the good one); then it is skipped.
    assert counts == [FAILURE_THRESHOLD, 4 * FAILURE_THRESHOLD]
    assert gw.log().count("retrying /v1/completions on another instance of flaky") \
        == FAILURE_THRESHOLD
