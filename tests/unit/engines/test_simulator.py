"""The simulated engine, in process: timing model, prefix cache, metrics, roles, faults."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from modelfleet.engines.sim import faults
from modelfleet.engines.sim.cache import PrefixCache
from modelfleet.engines.sim.prompt import block_hashes, parse_prompt
from modelfleet.engines.sim.slots import Slots
from modelfleet.engines.simulator import build_app, parse_args
from modelfleet.engines.vllm import decode_request, prefill_request

Client = TestClient[web.Request, web.Application]


@asynccontextmanager
async def engine(*flags: str) -> AsyncIterator[Client]:
    args = parse_args(["--port", "0", "--served-model-name", "sim", *flags])
    async with TestClient(TestServer(build_app(args))) as client:
        yield client


def words(n: int, stem: str = "w") -> str:
    return " ".join(f"{stem}{i}" for i in range(n))


def user(content: Any) -> dict[str, Any]:
    return {"model": "sim", "messages": [{"role": "user", "content": content}]}


async def post(client: Client, path: str, body: dict[str, Any],
               **kw: Any) -> tuple[int, Any, float]:
    """Status, JSON (or SSE text) and seconds taken."""
    start = time.monotonic()
    resp = await client.post(path, json=body, **kw)
    text = await resp.text()
    data = orjson.loads(text) if resp.content_type == "application/json" else text
    return resp.status, data, time.monotonic() - start


async def stats(client: Client) -> dict[str, Any]:
    return dict(await (await client.get("/stats")).json())


async def until(client: Client, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll /stats until ``check`` holds (5 s at most)."""
    for _ in range(500):
        current = await stats(client)
        if check(current):
            return current
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened; last stats {current}")


def sse_events(text: str) -> list[Any]:
    out: list[Any] = []
    for event in text.split("\n\n"):
        if event.startswith("data: "):
            data = event.removeprefix("data: ")
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


# -- the OpenAI surface the relay tests rely on ------------------------------

async def test_deterministic_words_usage_and_wrong_model() -> None:
    async with engine() as c:
        status, body, _ = await post(c, "/v1/chat/completions",
                                     {**user("one two three"), "max_tokens": 4})
        assert status == 200
        assert body["choices"][0] == {"index": 0, "finish_reason": "length", "message": {
            "role": "assistant", "content": "alpha bravo charlie delta"}}
        assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                                 "prompt_tokens_details": {"cached_tokens": 0},
                                 "cache_n": 0, "prompt_n": 3}
        _, text, _ = await post(c, "/v1/completions", {
            "prompt": "x", "max_tokens": 3, "stream": True,
            "stream_options": {"include_usage": True}})
        events = sse_events(text)
        assert "".join(e["choices"][0]["text"] for e in events[:3]) == "alpha bravo charlie "
        assert events[3]["choices"][0]["finish_reason"] == "length"
        assert events[4]["usage"]["completion_tokens"] == 3 and events[5] == "[DONE]"
        for path in ("/v1/chat/completions", "/v1/embeddings", "/tokenize"):
            status, body, _ = await post(c, path, {**user("x"), "model": "other", "input": "x"})
            assert status == 404 and body["error"]["param"] == "model"
        status, body, _ = await post(c, "/v1/completions", {"prompt": "x", "max_tokens": 0})
        assert status == 400 and body["error"]["param"] == "max_tokens"
        status, body, _ = await post(c, "/tokenize", {"prompt": "a bb ccc"})
        assert body["tokens"] == [1, 2, 3]


# -- slots and queue ----------------------------------------------------------

async def test_requests_beyond_the_slots_wait_in_order() -> None:
    async with engine("--max-num-seqs", "2", "--decode-ms-per-token", "20") as c:
        start = time.monotonic()
        tasks = [asyncio.create_task(post(c, "/v1/completions", {"prompt": "x",
                                                                 "max_tokens": 10}))
                 for _ in range(4)]
        await until(c, lambda s: s["running"] == 2 and s["waiting"] == 2)
        results = await asyncio.gather(*tasks)
        assert [r[0] for r in results] == [200] * 4
        assert all(len(r[1]["choices"][0]["text"].split()) == 10 for r in results)
        assert time.monotonic() - start >= 0.4  # two waves of 10 × 20 ms
        final = await stats(c)
        assert (final["running"], final["waiting"], final["completed"]) == (0, 0, 4)


async def test_full_queue_is_503() -> None:
    async with engine("--max-num-seqs", "1", "--max-queue", "1",
                      "--decode-ms-per-token", "20") as c:
        body = {"prompt": "x", "max_tokens": 10}
        tasks = [asyncio.create_task(post(c, "/v1/completions", body)) for _ in range(2)]
        await until(c, lambda s: s["running"] == 1 and s["waiting"] == 1)
        resp = await c.post("/v1/completions", json=body)
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"]["code"] == "QUEUE_FULL"
        assert [r[0] for r in await asyncio.gather(*tasks)] == [200, 200]
        assert (await stats(c))["rejected"] == 1


async def test_slots_give_up_places_and_handed_slots_on_cancel() -> None:
    slots = Slots(1, None)
    assert slots.reserve().result() is True
    queued, later = slots.reserve(), slots.reserve()
    waiting = asyncio.create_task(slots.wait(queued))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots.waiting == 1
    # Handed the slot, then cancelled before it resumed: the slot goes back.
    waiting = asyncio.create_task(slots.wait(later))
    await asyncio.sleep(0)
    slots.release()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (slots.running, slots.waiting) == (0, 0)


# -- prefix cache -------------------------------------------------------------

async def test_second_identical_prompt_hits_the_prefix_cache() -> None:
    async with engine("--prefill-ms-per-token", "2") as c:
        body = {**user(words(150)), "max_tokens": 1}
        _, first, cold = await post(c, "/v1/chat/completions", body)
        _, second, warm = await post(c, "/v1/chat/completions", body)
        assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        # Whole blocks of 16 within the first 149 tokens: the last is always computed.
        assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 144
        assert cold >= 0.3 and warm < cold / 2
        # A longer conversation with the same start reuses it; another role does not.
        longer = {"model": "sim", "max_tokens": 1, "messages": [
            body["messages"][0], {"role": "assistant", "content": "ok"},
            {"role": "user", "content": words(40)}]}
        _, third, _ = await post(c, "/v1/chat/completions", longer)
        assert third["usage"]["prompt_tokens_details"]["cached_tokens"] == 144
        system = {"model": "sim", "max_tokens": 1,
                  "messages": [{"role": "system", "content": words(150)}]}
        _, fourth, _ = await post(c, "/v1/chat/completions", system)
        assert fourth["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        s = await stats(c)
        assert s["prefix_cache_hits"] == 288
        assert s["prefix_cache_queries"] == 150 + 150 + (150 + 1 + 40) + 150


def test_prefix_cache_is_lru_and_keeps_the_last_token() -> None:
    cache = PrefixCache(capacity=2, block_size=2)
    first = block_hashes(list("abcde"), 2)
    assert len(first) == 2  # the fifth token is a partial block
    cache.insert(first)
    assert cache.match(first, 5) == 4
    assert cache.match(first[:2], 4) == 2  # 4 tokens: only the first block may hit
    cache.insert(block_hashes(list("vwxyz"), 2))
    assert cache.match(first, 5) == 0 and len(cache) == 2
    assert parse_prompt({"prompt": ""}).tokens == ["<bos>"]
    assert len(parse_prompt({"prompt": [1, 2, 3]})) == 3


# -- metrics ------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[str, Any]:
    """Check the exposition format by hand; ``{name: {labels_without_model: value}}``."""
    types: dict[str, str] = {}
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"second TYPE for {name}"
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.match(line)
        assert match, line
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no TYPE"
        pairs = dict(LABEL.findall(labels or ""))
        assert pairs.pop("model_name") == "sim"
        out.setdefault(name, {})[tuple(sorted(pairs.items()))] = float(value)
    for name, kind in types.items():
        if kind == "histogram":
            buckets = list(out[name + "_bucket"].values())
            assert buckets == sorted(buckets) and buckets[-1] == out[name + "_count"][()]
    return out


async def test_metrics_text_and_counters() -> None:
    async with engine("--decode-ms-per-token", "1") as c:
        await post(c, "/v1/completions", {"prompt": "a b c", "max_tokens": 4})
        await post(c, "/v1/completions", {"prompt": "d e", "max_tokens": 3, "stream": True})
        resp = await c.get("/metrics")
        assert resp.content_type == "text/plain"
        text = await resp.text()
    m = parse_metrics(text)
    one = {name: values.get((), None) for name, values in m.items()}
    assert one["vllm:num_requests_running"] == 0 and one["vllm:num_requests_waiting"] == 0
    assert one["vllm:prompt_tokens_total"] == 5 and one["vllm:generation_tokens_total"] == 7
    assert one["vllm:prefix_cache_queries_total"] == 5
    assert one["vllm:prefix_cache_hits_total"] == 0
    assert m["vllm:request_success_total"][(("finished_reason", "length"),)] == 2
    assert m["vllm:request_success_total"][(("finished_reason", "abort"),)] == 0
    assert one["vllm:time_to_first_token_seconds_count"] == 2
    assert one["vllm:e2e_request_latency_seconds_count"] == 2
    assert one["vllm:inter_token_latency_seconds_count"] == 3 + 2
    assert one["modelfleet_engine_requests_aborted_total"] == 0
    promtool = shutil.which("promtool")
    if promtool:
        result = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                                capture_output=True, timeout=30)
        # vLLM's names have colons, which promtool's linter frowns on; nothing else may fail.
        problems = [line for line in (result.stdout + result.stderr).splitlines()
                    if line.strip() and "should not contain ':'" not in line]
        assert problems == []


# -- roles --------------------------------------------------------------------

async def test_prefill_hands_kv_to_decode_which_skips_prefill() -> None:
    slow = ("--prefill-ms-per-token", "3", "--decode-ms-per-token", "1")
    async with engine("--role", "prefill", *slow) as p, engine("--role", "decode", *slow) as d:
        body = {"model": "sim", "prompt": words(100), "max_tokens": 5, "stream": True,
                "stream_options": {"include_usage": True}}
        status, handle, took = await post(p, "/v1/completions", prefill_request(body))
        assert status == 200 and took >= 0.3
        assert handle["choices"][0]["text"] == "alpha"
        kv = handle["kv_transfer_params"]
        assert kv["do_remote_prefill"] is True and kv["do_remote_decode"] is False
        assert len(kv["remote_block_ids"]) == 7  # ceil(100 / 16)
        assert (kv["remote_host"], kv["remote_port"]) == ("127.0.0.1", p.port)
        assert kv["remote_request_id"] == handle["id"] and kv["remote_engine_id"]
        assert (await stats(p))["requests_by_role"]["prefill"] == 1

        status, text, took = await post(d, "/v1/completions", decode_request(body, handle))
        events = sse_events(text)
        assert status == 200 and took < 0.2
        assert events[-2]["usage"]["prompt_tokens_details"]["cached_tokens"] == 99
        assert events[-2]["usage"]["completion_tokens"] == 5
        status, _, took = await post(d, "/v1/completions", {**body, "stream": False,
                                                            "prompt": words(100, "v")})
        assert status == 200 and took >= 0.3  # no handle (and not cached): it prefills
        s = await stats(d)
        assert (s["kv_transferred_tokens"], s["kv_missing"]) == (99, 1)
        assert s["requests_by_role"]["decode"] == 2

        # Without do_remote_decode a prefill instance serves the whole request.
        status, whole, _ = await post(p, "/v1/completions", {"prompt": "x", "max_tokens": 2})
        assert "kv_transfer_params" not in whole and whole["choices"][0]["text"] == "alpha bravo"


URLS = ["data:image/png;base64,AAAA", "http://example.com/cat.png"]
IMAGES: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": u}} for u in URLS]


async def test_encode_role_answers_image_hashes() -> None:
    async with engine("--role", "encode", "--encode-ms-per-image", "60") as e:
        status, body, took = await post(e, "/v1/chat/completions",
                                        user([{"type": "text", "text": "what?"}, *IMAGES]))
        assert status == 200 and took >= 0.12
        hashes = [hashlib.sha256(url.encode()).hexdigest() for url in URLS]
        assert body["object"] == "encode" and body["id"].startswith("encode-")
        assert (body["mm_hashes"], body["num_images"], body["encode_ms"]) == (hashes, 2, 120.0)
        status, body, _ = await post(e, "/v1/chat/completions", user("no pictures"))
        assert status == 400 and body["error"]["param"] == "messages"
        status, _, _ = await post(e, "/v1/completions", {"prompt": "x"})
        assert status == 400
        s = await stats(e)
        assert (s["requests_by_role"]["encode"], s["images_encoded"]) == (1, 2)


async def test_pd_encodes_images_unless_given_their_hashes() -> None:
    async with engine("--encode-ms-per-image", "200") as c:
        body = {**user([{"type": "text", "text": "see"}, IMAGES[0]]), "max_tokens": 1}
        status, first, took = await post(c, "/v1/chat/completions", body)
        assert status == 200 and took >= 0.2
        assert first["usage"]["prompt_tokens"] == 2  # a word and the image
        digest = hashlib.sha256(URLS[0].encode()).hexdigest()
        status, _, took = await post(c, "/v1/chat/completions", {**body, "mm_hashes": [digest]})
        assert status == 200 and took < 0.15
        s = await stats(c)
        assert (s["images"], s["images_encoded"], s["mm_hashes_reused"]) == (2, 1, 1)
        # pd ignores kv_transfer_params, as vLLM does without a connector.
        _, plain, _ = await post(c, "/v1/completions", prefill_request({"prompt": "x"}))
        assert "kv_transfer_params" not in plain
        assert (await stats(c))["requests_by_role"]["pd"] == 3


# -- aborts and profiling -------------------------------------------------------

async def test_abort_requests_ends_running_and_queued_requests() -> None:
    async with engine("--max-num-seqs", "1", "--decode-ms-per-token", "20") as c:
        running = asyncio.create_task(post(c, "/v1/completions", {
            "prompt": "x", "max_tokens": 100, "stream": True}, headers={"X-Request-Id": "r1"}))
        queued = asyncio.create_task(post(c, "/v1/chat/completions", {
            **user("x"), "max_tokens": 5}, headers={"X-Request-Id": "r2"}))
        await until(c, lambda s: s["running"] == 1 and s["waiting"] == 1)
        await asyncio.sleep(0.1)
        status, body, _ = await post(c, "/abort_requests",
                                     {"request_ids": ["chatcmpl-r2", "r1", "nope"]})
        assert status == 200 and body == {"aborted": ["chatcmpl-r2", "r1"]}
        _, text, took = await running
        events = sse_events(text)
        assert took < 1.5 and events[-1] == "[DONE]"
        assert events[-2]["choices"][0]["finish_reason"] == "abort" and len(events) > 3
        _, chat, _ = await queued
        assert chat["choices"][0]["finish_reason"] == "abort"
        assert chat["usage"]["completion_tokens"] == 0
        status, _, _ = await post(c, "/abort_requests", {"request_id": "r1"})
        assert status == 400
        s = await stats(c)
        assert (s["aborted"], s["running"], s["waiting"]) == (2, 0, 0)
        text = await (await c.get("/metrics")).text()
        assert 'vllm:request_success_total{finished_reason="abort",model_name="sim"} 2' in text
        assert 'modelfleet_engine_requests_aborted_total{model_name="sim"} 2' in text


async def test_client_disconnect_aborts_and_frees_the_slot() -> None:
    async with engine("--max-num-seqs", "1", "--decode-ms-per-token", "20") as c:
        resp = await c.post("/v1/completions", json={"prompt": "x", "max_tokens": 200,
                                                     "stream": True})
        assert (await resp.content.readline()).startswith(b"data: ")
        resp.close()
        s = await until(c, lambda s: s["aborted"] == 1 and s["running"] == 0)
        assert s["generation_tokens_total"] < 50
        status, _, _ = await post(c, "/v1/completions", {"prompt": "x", "max_tokens": 1})
        assert status == 200


async def test_profile_routes() -> None:
    async with engine() as c:
        assert (await post(c, "/start_profile", {}))[:2] == (200, {})
        assert (await post(c, "/stop_profile", {}))[:2] == (200, {})
        s = await stats(c)
        assert (s["profiles_started"], s["profiles_stopped"]) == (1, 1)


# -- faults -------------------------------------------------------------------

async def test_injected_errors_and_stalls() -> None:
    async with engine("--error-rate", "1", "--error-status", "429") as c:
        resp = await c.post("/v1/completions", json={"prompt": "x"})
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"]["code"] == "INJECTED_FAULT"
    async with engine("--stall-first-byte-s", "0.2") as c:
        status, _, took = await post(c, "/v1/completions", {"prompt": "x", "max_tokens": 1})
        assert status == 200 and took >= 0.2
    async with engine("--stall-mid-stream-s", "0.2") as c:
        resp = await c.post("/v1/completions", json={"prompt": "x", "max_tokens": 4,
                                                     "stream": True})
        arrivals = []
        async for line in resp.content:
            if line.startswith(b"data: {"):
                arrivals.append(time.monotonic())
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
        # The stall falls between tokens 2 and 3 (timers may wake a hair early).
        assert gaps[1] >= 0.18 and max(gaps[:1] + gaps[2:]) < 0.1


async def test_crash_after(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise RuntimeError("would have exited")

    monkeypatch.setattr(faults.os, "_exit", fake_exit)
    async with engine("--crash-after", "1") as c:
        assert (await post(c, "/v1/completions", {"prompt": "x", "max_tokens": 1}))[0] == 200
        assert (await post(c, "/v1/completions", {"prompt": "x", "max_tokens": 1}))[0] == 500
    assert exits == [70]


@pytest.mark.parametrize("flag", ["--max-model-len", "--n-ctx", "--ctx-size"])
async def test_context_length_is_enforced_like_vllm(flag: str) -> None:
    async with engine(flag, "20") as client:
        status, data, _ = await post(client, "/v1/chat/completions",
                                     {**user(words(8)), "max_tokens": 4})
        assert status == 200 and data["usage"]["prompt_tokens"] <= 16
        status, data, _ = await post(client, "/v1/chat/completions",
                                     {**user(words(8)), "max_tokens": 30})
        assert status == 400 and data["error"]["param"] == "max_tokens"
        assert "maximum context length is 20 tokens" in data["error"]["message"]


async def test_chat_stream_opens_with_the_role_and_counts_cache_like_llamacpp() -> None:
    async with engine() as client:
        body = {**user(words(40)), "stream": True, "max_tokens": 3,
                "stream_options": {"include_usage": True}}
        for _ in range(2):
            status, text, _ = await post(client, "/v1/chat/completions", body)
        chunks = [orjson.loads(line[6:]) for line in text.splitlines()
                  if line.startswith("data: {")]
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        use = chunks[-1]["usage"]
        assert use["cache_n"] == use["prompt_tokens_details"]["cached_tokens"] > 0
        assert use["cache_n"] + use["prompt_n"] == use["prompt_tokens"]
