"""Routing policies and the circuit breaker, against real simulator engine processes."""

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from modelfleet.fleet.routing import FAILURE_THRESHOLD
from tests.helpers import Gateway, simulator_model, start_gateway, wait_until

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


def cached_tokens(resp: Any) -> int:
    details = resp.usage.prompt_tokens_details
    return (details.cached_tokens or 0) if details else 0


async def turns(gw: Gateway, chats: list[list[dict[str, str]]], model: str = "pa") -> list[Any]:
    """One more turn of every chat, all sent at once; the answers join the chats."""
    client = gw.async_client()
    resps = await asyncio.gather(*(client.chat.completions.create(
        model=model, messages=messages, max_tokens=4) for messages in chats))
    for messages, resp in zip(chats, resps, strict=True):
        messages.append({"role": "assistant", "content": resp.choices[0].message.content})
    await client.close()
    return resps


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


def test_routing_prefix_aware_spreads_a_hot_system_prompt_and_keeps_each_chat(
        gw: Gateway) -> None:
    # Nine chats share a long system prompt (~1.2 s of prefill each) and start at once:
    # the load bound spreads them over the instances, and each chat's later turns
    # still find its own history cached on the instance that served it.
    system = "you are the support assistant of a bicycle shop; be brief. " * 55
    chats = [[{"role": "system", "content": system},
              {"role": "user", "content": f"chat {k}: my wheel wobbles."}] for k in range(9)]
    before = served(gw, "pa")
    previous = [r.usage.prompt_tokens for r in asyncio.run(turns(gw, chats))]
    first = delta(before, served(gw, "pa"))
    assert sum(first) == 9 and first[-2] > 0, first  # more than one instance took them
    for turn in range(2):
        for k, messages in enumerate(chats):
            messages.append({"role": "user", "content": f"chat {k}, turn {turn}: and now? " * 5})
        resps = asyncio.run(turns(gw, chats))
        for k, resp in enumerate(resps):
            # its whole previous prompt (full blocks) was cached where this turn went
            assert cached_tokens(resp) >= previous[k] - 16, (k, turn)
        previous = [r.usage.prompt_tokens for r in resps]


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


def test_routing_prefix_aware_remaps_the_chats_of_a_lost_instance(gw: Gateway) -> None:
    client = gw.client()
    messages = [{"role": "system", "content": "you are the lighthouse keeper's assistant. " * 20},
                {"role": "user", "content": "when does the lamp go on tonight? " * 6}]

    def turn() -> Any:
        resp = client.chat.completions.create(model="pa", messages=messages, max_tokens=4)
        messages.append({"role": "assistant", "content": resp.choices[0].message.content})
        messages.append({"role": "user", "content": f"and after that, turn {len(messages)}? " * 5})
        return resp

    before = served(gw, "pa")
    turn()
    home = next(a for a, n in served(gw, "pa").items() if n > before.get(a, 0))
    pid = next(i["pid"] for i in gw.info("pa")["instances"] if i["address"] == home)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: home not in served(gw, "pa") and len(served(gw, "pa")) == 3, timeout=60)
    prompts = [turn().usage.prompt_tokens]  # served elsewhere: its cache is rebuilt there
    for _ in range(2):  # and the chat stays on its new instance
        resp = turn()
        assert cached_tokens(resp) >= prompts[-1] - 16
        prompts.append(resp.usage.prompt_tokens)
