"""The generate APIs for real: seed 004's ``/v1/generate`` and seed 002's path-model routes.

A gateway process with simulator engines (deterministic words) under seed 004's
model names and aliases, plus one gateway with the real tiny chat model.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from modelfleet.gateway.scenarios import render_prompt
from tests.helpers import (
    Gateway,
    free_port,
    http_ok,
    simulator_model,
    start_gateway,
    tiny_chat_model,
    wait_until,
)

QWEN = "Qwen2-7B-Instruct-GPTQ-Int4"
LLAMA = "Meta-Llama-3.1-8B-Instruct-GPTQ-INT4"

# Seed 004's four curl examples, bodies as the seed has them (its mis-encoded
# copy lost a few characters of the Chinese inputs; they are restored here).
SEED_004_EXAMPLES: list[tuple[dict[str, Any], str, int]] = [
    ({"model_id": "qwen2", "inputs": "请用中文介绍你自己",
      "parameters": {"max_new_tokens": 128, "temperature": 0.7, "top_p": 0.9}}, QWEN, 128),
    ({"model_id": "llama3", "inputs": "牛顿三大定律是什么？", "scenario": "qa",
      "parameters": {"max_new_tokens": 200, "temperature": 0.5}}, LLAMA, 200),
    ({"model_id": "qwen2",
      "inputs": "人工智能是计算机科学的一个分支，旨在创建能够执行通常需要人类智能的任务的系统……",
      "scenario": "summarize", "parameters": {"max_new_tokens": 100}}, QWEN, 100),
    ({"model_id": "llama3", "inputs": "这个产品非常好，大家都很喜欢。", "scenario": "rewrite",
      "parameters": {"max_new_tokens": 64, "temperature": 0.9}}, LLAMA, 64),
]


# The simulator's deterministic output: these words, cycling, one per token.
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()


def words(n: int) -> list[str]:
    return [WORDS[i % len(WORDS)] for i in range(n)]


@pytest.fixture(scope="module")
def upstream_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def upstream(upstream_port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A simulator we launch ourselves, served to the gateway as an external model."""
    proc = subprocess.Popen([sys.executable, "-m", "modelfleet.engines.simulator",
                             "--port", str(upstream_port), "--served-model-name", "gone"])
    wait_until(lambda: http_ok(f"http://127.0.0.1:{upstream_port}/health"), timeout=20)
    yield proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: subprocess.Popen[bytes],
       upstream_port: int) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("generate")
    gateway = start_gateway(tmp, [
        simulator_model(QWEN, aliases=["qwen2"]),
        simulator_model(LLAMA, aliases=["llama3"]),
        simulator_model("capped", limits={"max_tokens": 64, "default_temperature": 0.2}),
        simulator_model("stalls", args={"stall_first_byte_s": 5}),
        simulator_model("broken", args={"error_rate": 1.0, "error_status": 500}),
        {"name": "gone", "engine": "external", "model": f"http://127.0.0.1:{upstream_port}/v1"},
    ], timeouts={"first_byte": 0.5, "first_byte_per_token": 0.0, "idle": 5})
    yield gateway
    gateway.stop()


def prompt_tokens_seen(gw: Gateway, model: str) -> int:
    """What the model's simulator has counted as prompt tokens (words) so far."""
    endpoint = gw.info(model)["endpoint"]
    return httpx.get(endpoint + "/stats").json()["prompt_tokens_total"] if endpoint else 0


def generate(gw: Gateway, body: dict[str, Any]) -> httpx.Response:
    return gw.post("/v1/generate", json=body, timeout=30)


def assert_004_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error_code"] == code and body["error"]["code"] == code
    assert body["path"] == "/v1/generate" and body["error"]["message"]
    return body


@pytest.mark.parametrize(("body", "model", "tokens"), SEED_004_EXAMPLES,
                         ids=["base-qwen2", "qa-llama3", "summarize-qwen2", "rewrite-llama3"])
def test_generate_seed_004_examples(gw: Gateway, body: dict[str, Any], model: str,
                                    tokens: int) -> None:
    before = prompt_tokens_seen(gw, model)
    resp = generate(gw, body)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"generated_text": " ".join(words(tokens)), "model": model,
                           "tokens": tokens}
    # The scenario's template, not the bare input, reached the engine.
    prompt = render_prompt(body["inputs"], body.get("scenario"))
    assert prompt_tokens_seen(gw, model) - before == len(prompt.split())


@pytest.mark.parametrize("scenario", [None, "base", "qa", "summarize", "rewrite"])
def test_generate_each_scenario(gw: Gateway, scenario: str | None) -> None:
    body: dict[str, Any] = {"model_id": QWEN, "inputs": "one two three",
                            "parameters": {"max_new_tokens": 3, "do_sample": False,
                                           "stop": ["\n"]}}
    if scenario is not None:
        body["scenario"] = scenario
    before = prompt_tokens_seen(gw, QWEN)
    resp = generate(gw, body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["generated_text"] == "alpha bravo charlie"
    seen = prompt_tokens_seen(gw, QWEN) - before
    assert seen == len(render_prompt("one two three", scenario).split())
    assert (seen == 3) == (scenario in (None, "base"))


def test_generate_model_not_found_is_400(gw: Gateway) -> None:
    body = assert_004_error(generate(gw, {"model_id": "gpt-5", "inputs": "hi"}),
                            400, "MODEL_NOT_FOUND")
    assert body["error"]["param"] == "model_id" and "gpt-5" in body["error"]["message"]


@pytest.mark.parametrize(("extra", "param"), [({"scenario": "poem"}, "scenario"),
                                              ({"inputs": "   "}, "inputs")])
def test_generate_prompt_format_failed(gw: Gateway, extra: dict[str, str], param: str) -> None:
    body = assert_004_error(generate(gw, {"model_id": "qwen2", "inputs": "hi", **extra}),
                            400, "PROMPT_FORMAT_FAILED")
    assert body["error"]["param"] == param


def test_generate_timeout_is_504(gw: Gateway) -> None:
    # Its start time is not the point here.
    gw.post("/api/models/stalls/start?wait=true", timeout=60)
    started = time.monotonic()
    assert_004_error(generate(gw, {"model_id": "stalls", "inputs": "hi",
                                   "parameters": {"max_new_tokens": 4}}),
                     504, "INFERENCE_TIMEOUT")
    assert time.monotonic() - started < 4  # the gateway's 0.5 s, not the engine's 5 s stall


def test_generate_engine_5xx_is_upstream_server_error(gw: Gateway) -> None:
    body = assert_004_error(generate(gw, {"model_id": "broken", "inputs": "hi"}),
                            500, "UPSTREAM_SERVER_ERROR")
    assert body["error"]["message"] == "injected fault"
    assert body["error"]["details"] == {"upstream_status": 500, "upstream_code": "INJECTED_FAULT",
                                        "alias": "TGI_SERVER_ERROR"}


def test_generate_unreachable_engine_is_downstream_request_failed(
        gw: Gateway, upstream: subprocess.Popen[bytes]) -> None:
    """An engine that was up and went away (an external server that died): 503."""
    ok = generate(gw, {"model_id": "gone", "inputs": "hi", "parameters": {"max_new_tokens": 2}})
    assert ok.status_code == 200 and ok.json()["generated_text"] == "alpha bravo"
    upstream.terminate()
    upstream.wait(10)
    time.sleep(0.5)  # let the gateway see its pooled connection close
    assert_004_error(generate(gw, {"model_id": "gone", "inputs": "hi"}),
                     503, "DOWNSTREAM_REQUEST_FAILED")


@pytest.mark.parametrize(("parameters", "param"), [
    ({"temperature": 3}, "parameters.temperature"),
    ({"temperature": "hot"}, "parameters.temperature"),
    ({"do_sample": "no"}, "parameters.do_sample"),
    ({"max_new_tokens": 0}, "parameters.max_new_tokens"),
    ({"stop": "\n"}, "parameters.stop"),
])
def test_generate_wrong_types_are_400(gw: Gateway, parameters: dict[str, Any],
                                      param: str) -> None:
    body = assert_004_error(generate(gw, {"model_id": "qwen2", "inputs": "x",
                                          "parameters": parameters}), 400, "INVALID_PARAMETER")
    assert body["error"]["param"] == param and param in body["error"]["message"]
    resp = gw.post("/v1/generate", content=b"{not json", timeout=10,
                   headers={"content-type": "application/json"})
    assert_004_error(resp, 400, "INVALID_JSON")


def test_generate_model_limits_apply(gw: Gateway) -> None:
    resp = generate(gw, {"model_id": "capped", "inputs": "x"})
    assert resp.status_code == 200 and resp.json()["tokens"] == 64  # default 128, capped
    body = assert_004_error(generate(gw, {"model_id": "capped", "inputs": "x",
                                          "parameters": {"max_new_tokens": 100}}),
                            400, "INVALID_PARAMETER")
    assert "64" in body["error"]["message"]


# -- seed 002: the model in the path ----------------------------------------------------------

def sse_events(resp: httpx.Response) -> list[bytes]:
    return [e.removeprefix(b"data: ") for e in resp.read().split(b"\n\n") if e]


def test_model_generate_seed_002_body(gw: Gateway) -> None:
    resp = gw.post("/api/models/qwen2/generate", json={
        "prompt": "Hello, how are you?", "max_tokens": 100, "temperature": 0.7, "top_p": 0.9,
        "top_k": 40, "stop": ["\n", "Human:"], "stream": False})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] and body["model"] == QWEN and isinstance(body["created"], int)
    assert body["choices"] == [{"index": 0, "text": " ".join(words(100)),
                                "finish_reason": "length"}]
    usage = body["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        4, 100, 104)


def test_model_generate_streams_sse_chunks_then_done(gw: Gateway) -> None:
    with httpx.stream("POST", gw.url + "/api/models/qwen2/generate", timeout=30, json={
            "prompt": "Tell me a story", "max_tokens": 200, "stream": True}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = sse_events(resp)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["choices"][0]["index"] == 0 for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "".join(
        w + " " for w in words(200))


def test_model_generate_under_api_v1(gw: Gateway) -> None:
    resp = gw.post("/api/v1/models/llama3/generate",
                   json={"prompt": "Hello, world!", "max_tokens": 100, "temperature": 0.7})
    assert resp.status_code == 200 and resp.json()["model"] == LLAMA
    assert resp.json()["choices"][0]["text"] == " ".join(words(100))


def test_model_chat_takes_the_model_from_the_path(gw: Gateway) -> None:
    resp = gw.post("/api/models/llama3/chat/completions", json={
        "model": "ignored", "max_tokens": 100, "temperature": 0.7, "stream": False,
        "messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "Hello!"}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == LLAMA and body["choices"][0]["index"] == 0
    assert body["choices"][0]["message"] == {"role": "assistant",
                                             "content": " ".join(words(100))}
    assert body["usage"]["completion_tokens"] == 100
    with httpx.stream("POST", gw.url + "/api/v1/models/qwen2/chat/completions", timeout=30,
                      json={"messages": [{"role": "user", "content": "x"}], "max_tokens": 3,
                            "stream": True}) as stream:
        events = sse_events(stream)
    assert events[-1] == b"[DONE]"
    deltas = [orjson.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]]
    assert "".join(deltas) == "alpha bravo charlie "


def test_model_embeddings_take_the_model_from_the_path(gw: Gateway) -> None:
    resp = gw.post("/api/models/qwen2/embeddings",
                   json={"input": ["Hello world", "How are you?"], "encoding_format": "float"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == QWEN and [d["index"] for d in body["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 8 for d in body["data"])
    assert body["usage"]["prompt_tokens"] == 5


def test_model_routes_unknown_model_is_404_in_the_manager_shape(gw: Gateway) -> None:
    for path in ("/api/models/invalid-model-123/generate",
                 "/api/v1/models/invalid-model-123/chat/completions"):
        resp = gw.post(path, json={"prompt": "x", "messages": [{"role": "user", "content": "x"}]})
        assert resp.status_code == 404
        body = resp.json()
        assert body["success"] is False and "invalid-model-123" in body["message"]
        assert body["error"]["code"] == "MODEL_NOT_FOUND" and body["path"] == path
        assert body["timestamp"]


def test_model_routes_validate_and_apply_limits(gw: Gateway) -> None:
    resp = gw.post("/api/models/qwen2/generate", json={"max_tokens": 3})
    assert resp.status_code == 400
    assert resp.json()["success"] is False and resp.json()["error"]["param"] == "prompt"
    resp = gw.post("/api/models/capped/generate", json={"prompt": "x", "max_tokens": 100})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "max_tokens"


def test_generate_routes_are_in_openapi(gw: Gateway) -> None:
    schema = gw.get("/openapi.json")
    op = schema["paths"]["/v1/generate"]["post"]
    assert "TGI_SERVER_ERROR" in op["description"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert {"model_id", "inputs", "scenario", "parameters"} <= set(
        schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"])
    for prefix in ("/api/models", "/api/v1/models"):
        for suffix in ("generate", "chat/completions", "embeddings"):
            item = schema["paths"][f"{prefix}/{{model_id}}/{suffix}"]["post"]
            assert item["parameters"][0]["name"] == "model_id"
    gen = schema["paths"]["/api/models/{model_id}/generate"]["post"]
    ref = gen["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert "top_k" in schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    assert "text/event-stream" in gen["responses"]["200"]["content"]


# -- the real tiny chat model -----------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(tmp_path_factory.mktemp("generate-tiny"), [tiny_chat_model()])
    yield gateway
    gateway.stop()


def test_generate_with_the_tiny_chat_model(tiny: Gateway) -> None:
    resp = tiny.post("/v1/generate", json={
        "model_id": "tiny-chat", "inputs": "What is 2 plus 3?", "scenario": "qa",
        "parameters": {"max_new_tokens": 16}})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == "tiny-chat" and body["generated_text"].strip()
    assert 0 < body["tokens"] <= 16
