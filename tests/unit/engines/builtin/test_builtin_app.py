"""The engine's routes in process (Starlette TestClient): shapes, errors, limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from modelfleet.engines.builtin.app import build_app
from modelfleet.engines.builtin.config import EngineArgs
from modelfleet.engines.builtin.server import load_context

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def chat_client(tiny_llama_dir: Path) -> Iterator[TestClient]:
    args = EngineArgs(
        model=str(tiny_llama_dir),
        port=0,
        served_model_name="tiny",
        max_model_len=64,
        max_concurrency=2,
    )
    with TestClient(build_app(load_context(args))) as client:
        yield client


@pytest.fixture(scope="module")
def rerank_client(tiny_cross_encoder_dir: Path) -> Iterator[TestClient]:
    args = EngineArgs(model=str(tiny_cross_encoder_dir), port=0)
    ctx = load_context(args)
    assert ctx.task == "rerank"
    with TestClient(build_app(ctx)) as client:
        yield client


def assert_error(response: Any, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error, dict) and isinstance(error["message"], str) and error["message"]
    assert error["code"] == code
    assert error["type"] in ("invalid_request_error", "not_found_error", "server_error")
    if param is not None:
        assert error["param"] == param
    return error


def test_health_models_stats_metrics(chat_client: TestClient) -> None:
    assert chat_client.get("/health").json() == {"status": "ok"}
    models = chat_client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "tiny"
    assert models["data"][0]["max_model_len"] == 64
    stats = chat_client.get("/stats").json()
    assert set(stats) == {
        "running",
        "waiting",
        "completed",
        "aborted",
        "prompt_tokens_total",
        "generation_tokens_total",
    }
    text = chat_client.get("/metrics").text
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "modelfleet_engine_requests_aborted_total",
    ):
        assert f'\n{name}{{model_name="tiny"}} ' in "\n" + text


def test_chat_non_streaming(chat_client: TestClient) -> None:
    body = chat_client.post(
        "/v1/chat/completions",
        json={
            "model": "whatever",
            "messages": MSG,
            "max_tokens": 5,
            "temperature": 0,
            "ignore_eos": True,
            "n": 2,
        },
    ).json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny"
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["choices"][0]["message"]["content"] == body["choices"][1]["message"]["content"]
    assert body["choices"][0]["finish_reason"] == "length"
    prompt = chat_client.post("/tokenize", json={"messages": MSG}).json()["count"]
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": 10,
        "total_tokens": prompt + 10,
        # llama.cpp's names too: no cache between requests, every prompt token processed
        "cache_n": 0,
        "prompt_n": prompt,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_chat_stream_format(chat_client: TestClient) -> None:
    with chat_client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "messages": MSG,
            "max_tokens": 4,
            "stream": True,
            "n": 2,
            "ignore_eos": True,
            "stream_options": {"include_usage": True},
        },
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join(response.iter_text())
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [
        {"role": "assistant", "content": ""}
    ] * 2
    finals = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert sorted(f["index"] for f in finals) == [0, 1]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8


def test_completions_prompts_times_n_and_echo(chat_client: TestClient) -> None:
    body = chat_client.post(
        "/v1/completions",
        json={
            "prompt": ["hello", [5, 6, 7]],
            "n": 2,
            "max_tokens": 3,
            "echo": True,
            "ignore_eos": True,
            "seed": 1,
        },
    ).json()
    assert body["object"] == "text_completion"
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["choices"][0]["text"].startswith("hello")
    assert body["usage"]["completion_tokens"] == 12
    assert body["usage"]["prompt_tokens"] == 1 + 3


@pytest.mark.parametrize(
    ("path", "body", "code", "param"),
    [
        (
            "/v1/chat/completions",
            {"messages": MSG, "max_tokens": -1},
            "INVALID_PARAMETER",
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            {"messages": MSG, "temperature": 3},
            "INVALID_PARAMETER",
            "temperature",
        ),
        ("/v1/chat/completions", {"max_tokens": 3}, "INVALID_PARAMETER", "messages"),
        (
            "/v1/chat/completions",
            {"messages": MSG, "max_tokens": 100},
            "INVALID_PARAMETER",
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "hello " * 80}]},
            "INVALID_PARAMETER",
            "messages",
        ),
        ("/v1/completions", {"prompt": [10**6]}, "INVALID_PARAMETER", "prompt"),
        ("/v1/completions", {"max_tokens": 3}, "INVALID_PARAMETER", "prompt"),
        ("/detokenize", {"tokens": [10**6]}, "INVALID_PARAMETER", "tokens"),
    ],
)
def test_bad_requests_are_400(
    chat_client: TestClient, path: str, body: dict, code: str, param: str
) -> None:
    assert_error(chat_client.post(path, json=body), 400, code, param)


def test_body_errors(chat_client: TestClient) -> None:
    assert_error(chat_client.post("/v1/chat/completions", content=b"{nope"), 400, "INVALID_JSON")
    assert_error(chat_client.post("/v1/chat/completions", content=b"[1]"), 400, "INVALID_PARAMETER")
    assert_error(chat_client.post("/v1/chat/completions", content=b""), 400, "INVALID_PARAMETER")
    big = b'{"messages": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    assert_error(chat_client.post("/v1/chat/completions", content=big), 413, "PAYLOAD_TOO_LARGE")


def test_routes_and_methods(chat_client: TestClient) -> None:
    assert_error(chat_client.get("/v2/nothing"), 404, "NOT_FOUND")
    error = assert_error(chat_client.post("/v1/embeddings", json={"input": "x"}), 404, "NOT_FOUND")
    assert "chat task" in error["message"]
    assert_error(chat_client.get("/v1/chat/completions"), 405, "METHOD_NOT_ALLOWED")


def test_images_are_refused(chat_client: TestClient) -> None:
    content = [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]
    error = assert_error(
        chat_client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": content}]}
        ),
        400,
        "INVALID_PARAMETER",
    )
    assert error["message"] == "this model does not accept images"


def test_a_bug_is_a_json_500(chat_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = chat_client.app.state.ctx  # type: ignore[attr-defined]

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(ctx.generator, "render_chat", broken)
    error = assert_error(
        chat_client.post("/v1/chat/completions", json={"messages": MSG}), 500, "INTERNAL_ERROR"
    )
    assert "boom" not in error["message"]


def test_tokenize_roundtrip(chat_client: TestClient) -> None:
    out = chat_client.post("/tokenize", json={"prompt": "hello world"}).json()
    assert out["count"] == len(out["tokens"]) and out["max_model_len"] == 64
    assert chat_client.post("/detokenize", json={"tokens": out["tokens"]}).json() == {
        "prompt": "hello world"
    }


def test_cross_encoder_rerank_and_score(rerank_client: TestClient) -> None:
    docs = ["the cat sat", {"text": "hello world"}, "one two three"]
    for path in ("/v1/rerank", "/rerank"):
        body = rerank_client.post(
            path, json={"model": "x", "query": "hello", "documents": docs, "top_n": 2}
        ).json()
        assert body["object"] == "rerank" and len(body["results"]) == 2
        scores = [r["relevance_score"] for r in body["results"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        assert body["results"][0]["document"]["text"] in (
            "the cat sat",
            "hello world",
            "one two three",
        )
        assert body["usage"]["prompt_tokens"] > 0
    bare = rerank_client.post(
        "/v1/rerank", json={"query": "q", "documents": ["a", "b"], "return_documents": False}
    ).json()
    assert all("document" not in r for r in bare["results"])
    score = rerank_client.post("/v1/score", json={"text_1": "hello", "text_2": ["a", "b"]}).json()
    assert [d["index"] for d in score["data"]] == [0, 1]
    assert_error(rerank_client.post("/v1/embeddings", json={"input": "x"}), 404, "NOT_FOUND")
    assert_error(
        rerank_client.post("/v1/chat/completions", json={"messages": MSG}), 404, "NOT_FOUND"
    )
    assert_error(
        rerank_client.post("/tokenize", json={"messages": MSG}),
        400,
        "INVALID_PARAMETER",
        "messages",
    )
    assert rerank_client.post("/tokenize", json={"prompt": "the cat"}).json()["count"] == 4
