"""The zero-config models for real: gateway + built-in engine processes.

Drives the tiny chat model and all-MiniLM-L6-v2 through the gateway with the
official openai client.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from modelfleet.fleet.defaults import minilm_path
from tests.helpers import Gateway, start_gateway, tiny_chat_model, wait_until

HELLO = [{"role": "user", "content": "What is 2 plus 3?"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("builtin")
    gateway = start_gateway(tmp, [
        tiny_chat_model("tiny-chat", aliases=["tiny"], idle_timeout=0),
        {"name": "minilm", "engine": "builtin", "model": str(minilm_path()), "task": "embed"},
    ])
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose chat model unloads after 3 idle seconds."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    gateway = start_gateway(tmp, [tiny_chat_model("tiny-chat", idle_timeout=3)])
    yield gateway
    gateway.stop()


def test_builtin_chat(gw: Gateway) -> None:
    resp = gw.client().chat.completions.create(model="tiny-chat", messages=HELLO, max_tokens=24)
    choice = resp.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert resp.usage is not None and resp.usage.prompt_tokens > 5
    assert 0 < resp.usage.completion_tokens <= 24
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_builtin_chat_streaming(gw: Gateway) -> None:
    stream = gw.client().chat.completions.create(
        model="tiny", messages=HELLO, max_tokens=24, stream=True, temperature=0,
        stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks
              if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 5
    assert len(pieces) <= usage.completion_tokens <= 24
    # Greedy decoding: the stream says what the non-streaming answer says.
    whole = gw.client().chat.completions.create(model="tiny", messages=HELLO, max_tokens=24,
                                                temperature=0)
    assert "".join(pieces) == whole.choices[0].message.content


def test_builtin_model_may_be_omitted_with_one_chat_model(gw: Gateway) -> None:
    resp = gw.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 4})
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "tiny-chat"


def test_builtin_completions(gw: Gateway) -> None:
    resp = gw.client().completions.create(model="tiny-chat", prompt="Once upon a time",
                                          max_tokens=12, temperature=0)
    assert resp.choices[0].text and resp.usage is not None
    assert resp.usage.completion_tokens > 0


def test_builtin_embeddings_rank_a_paraphrase_first(gw: Gateway) -> None:
    texts = ["A man is playing a guitar.", "Someone plays an acoustic guitar.",
             "The stock market fell sharply today."]
    resp = gw.client().embeddings.create(model="minilm", input=texts)
    vectors = [d.embedding for d in resp.data]
    assert [len(v) for v in vectors] == [384, 384, 384]

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
            sum(x * x for x in a) * sum(y * y for y in b))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.3
    assert resp.usage.prompt_tokens > 10


def test_builtin_rerank_puts_the_relevant_document_first(gw: Gateway) -> None:
    docs = ["Paris is the capital and largest city of France.",
            "Bananas are rich in potassium.", "The Pacific is the largest ocean."]
    resp = gw.post("/v1/rerank", json={"model": "minilm", "query": "What is the capital of France?",
                                       "documents": docs})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert results[0]["index"] == 0
    assert results[0]["document"]["text"] == docs[0]
    assert results[0]["relevance_score"] > results[1]["relevance_score"]


def test_builtin_errors_map_to_openai_exceptions(gw: Gateway) -> None:
    client = gw.client()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny-chat", messages=HELLO, top_p=1.5)
    with pytest.raises(openai.BadRequestError, match="embedding"):
        client.embeddings.create(model="tiny-chat", input="x")
    with pytest.raises(openai.BadRequestError):  # the engine's own validation, passed through
        client.chat.completions.create(model="tiny-chat", messages=HELLO, max_tokens=100_000)


def test_builtin_concurrent_requests_for_a_stopped_model_spawn_once(lifecycle: Gateway) -> None:
    lifecycle.post("/api/models/tiny-chat/stop?wait=true")
    assert lifecycle.info("tiny-chat")["status"] == "stopped"
    before = lifecycle.info("tiny-chat")["start_count"]

    async def burst() -> list[str | None]:
        client = lifecycle.async_client()
        replies = await asyncio.gather(*(
            client.chat.completions.create(model="tiny-chat", max_tokens=4,
                                           messages=[{"role": "user", "content": f"hi {i}"}])
            for i in range(20)))
        return [r.choices[0].message.content for r in replies]

    answers = asyncio.run(burst())
    assert len(answers) == 20 and all(isinstance(a, str) for a in answers)
    info = lifecycle.info("tiny-chat")
    assert info["start_count"] == before + 1
    assert len(lifecycle.engine_pids()) == 1


def test_builtin_idle_unload_then_transparent_restart(lifecycle: Gateway) -> None:
    client = lifecycle.client()
    client.chat.completions.create(model="tiny-chat", messages=HELLO, max_tokens=2)
    pid = lifecycle.info("tiny-chat")["pid"]
    wait_until(lambda: lifecycle.info("tiny-chat")["status"] == "stopped", timeout=15)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    resp = client.chat.completions.create(model="tiny-chat", messages=HELLO, max_tokens=2)
    assert resp.choices[0].message.content is not None
    assert lifecycle.info("tiny-chat")["pid"] != pid


def test_builtin_client_disconnect_stops_generation(lifecycle: Gateway) -> None:
    body = {"model": "tiny-chat", "prompt": "Once upon a time", "max_tokens": 400,
            "temperature": 1.0, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", lifecycle.url + "/v1/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        seen = 0
        for line in lines:
            seen += line.startswith("data: {")
            if seen == 2:
                break
    engine = lifecycle.info("tiny-chat")["endpoint"]
    stats = wait_until(
        lambda: (s := httpx.get(engine + "/stats").json())["aborted"] >= 1 and s["running"] == 0
        and s, timeout=5)
    assert stats["generation_tokens_total"] < 400


def test_builtin_engine_killed_mid_request(lifecycle: Gateway) -> None:
    client = lifecycle.client()
    client.chat.completions.create(model="tiny-chat", messages=HELLO, max_tokens=2)
    pid = lifecycle.info("tiny-chat")["pid"]
    outcome: dict[str, object] = {}

    def long_request() -> None:
        try:
            client.completions.create(model="tiny-chat", prompt="Once upon a time",
                                      max_tokens=400, extra_body={"ignore_eos": True})
        except openai.APIStatusError as exc:
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    worker = threading.Thread(target=long_request)
    worker.start()
    wait_until(lambda: lifecycle.info("tiny-chat")["pending_requests"] == 1, timeout=10)
    time.sleep(0.3)
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    worker.join(10)
    err = outcome.get("error")
    assert isinstance(err, openai.APIStatusError), outcome
    assert err.status_code in (502, 503)
    assert isinstance(err.body, dict) and err.body["code"]
    assert float(outcome["at"]) - killed_at < 2.0  # type: ignore[arg-type]
    wait_until(lambda: lifecycle.info("tiny-chat")["status"] == "failed", timeout=5)
    assert "code -9" in lifecycle.info("tiny-chat")["failure_reason"]
    resp = client.chat.completions.create(model="tiny-chat", messages=HELLO, max_tokens=2)
    assert resp.choices[0].message.content is not None
    assert lifecycle.info("tiny-chat")["status"] == "ready"


def test_builtin_engines_die_with_a_killed_gateway(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, [tiny_chat_model("tiny-chat", auto_start=True)])
    wait_until(lambda: gateway.info("tiny-chat")["status"] == "ready", timeout=60)
    engines = gateway.engine_pids()
    assert engines
    gateway.proc.send_signal(signal.SIGKILL)
    gateway.proc.wait()

    def gone() -> bool:
        return all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE
                   for p in engines)

    wait_until(gone, timeout=10)
