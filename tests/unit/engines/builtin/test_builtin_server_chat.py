"""A real chat engine process, driven with the official ``openai`` client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e

MSG: Any = [{"role": "user", "content": "hello world"}]
NO_EOS = {"ignore_eos": True}


@pytest.fixture(scope="module")
def engine(launch_engine: Any, tiny_llama_dir: Path) -> Iterator[Any]:
    with launch_engine(tiny_llama_dir, "--served-model-name", "tiny-chat") as proc:
        yield proc


@pytest.fixture(scope="module")
def client(engine: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{engine.url}/v1", api_key="unused", max_retries=0, timeout=30)


def stats(engine: Any) -> dict[str, int]:
    return dict(httpx.get(f"{engine.url}/stats", timeout=5).json())


def test_models_and_ready_log(engine: Any, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["tiny-chat"]
    log = engine.log()
    assert "loading model" in log and "ready" in log
    assert log.index("loading model") < log.index("ready")


def test_chat_non_stream(engine: Any, client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="anything", messages=MSG, max_tokens=8, temperature=0, extra_body=NO_EOS
    )
    assert out.model == "tiny-chat" and out.object == "chat.completion"
    choice = out.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason == "length"
    prompt = httpx.post(f"{engine.url}/tokenize", json={"messages": MSG}).json()["count"]
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (
        prompt,
        8,
        prompt + 8,
    )


def test_chat_stream_matches_non_stream(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model="m", messages=MSG, max_tokens=12, temperature=0, extra_body=NO_EOS
    )
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=MSG,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=NO_EOS,
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    assert whole.usage is not None and chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert len(chunks) > 3


def test_same_seed_same_text(client: openai.OpenAI) -> None:
    texts = [
        client.chat.completions.create(
            model="m", messages=MSG, max_tokens=16, temperature=1.0, seed=1234, extra_body=NO_EOS
        )
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert texts[0] == texts[1]


def test_stop_string(client: openai.OpenAI) -> None:
    full = (
        client.chat.completions.create(
            model="m", messages=MSG, max_tokens=30, temperature=0, extra_body=NO_EOS
        )
        .choices[0]
        .message.content
        or ""
    )
    stop = next(
        full[i : i + 2]
        for i in range(3, len(full) - 2)
        if "\ufffd" not in full[i : i + 2] and full.find(full[i : i + 2]) == i
    )
    out = client.chat.completions.create(
        model="m", messages=MSG, max_tokens=30, temperature=0, stop=[stop], extra_body=NO_EOS
    )
    assert out.choices[0].message.content == full[: full.find(stop)]
    assert out.choices[0].finish_reason == "stop"


def test_completions(client: openai.OpenAI) -> None:
    out = client.completions.create(
        model="m", prompt=["hello", "world"], max_tokens=4, n=2, extra_body=NO_EOS
    )
    assert out.object == "text_completion" and len(out.choices) == 4
    assert out.usage is not None and out.usage.completion_tokens == 16
    streamed = list(
        client.completions.create(
            model="m", prompt="hello", max_tokens=4, stream=True, extra_body=NO_EOS
        )
    )
    assert streamed[-1].choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"temperature": 5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 50}, "n"),
        ({"messages": []}, "messages"),
        ({"max_tokens": 10**6}, "max_tokens"),
    ],
)
def test_bad_parameters(client: openai.OpenAI, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**{"model": "m", "messages": MSG, **kwargs})
    assert info.value.status_code == 400
    assert info.value.param == param
    assert info.value.code == "INVALID_PARAMETER"


def test_client_disconnect_aborts_generation(engine: Any, client: openai.OpenAI) -> None:
    before = stats(engine)
    stream = client.chat.completions.create(
        model="m", messages=MSG, max_tokens=3500, temperature=1.0, stream=True, extra_body=NO_EOS
    )
    for _, _chunk in zip(range(2), stream, strict=False):
        pass
    assert stats(engine)["running"] == 1
    stream.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = stats(engine)
        if now["aborted"] == before["aborted"] + 1 and now["running"] == 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"generation was not aborted: {stats(engine)}")
    # It stopped early: far fewer than the 3500 tokens asked for.
    assert now["generation_tokens_total"] - before["generation_tokens_total"] < 1000
    metrics = httpx.get(f"{engine.url}/metrics").text
    assert 'modelfleet_engine_requests_aborted_total{model_name="tiny-chat"} 1' in metrics
    deadline = time.monotonic() + 2
    while "aborted after" not in engine.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "aborted after" in engine.log()


def test_non_stream_disconnect_aborts_too(engine: Any) -> None:
    before = stats(engine)
    body = {"messages": MSG, "max_tokens": 3500, "temperature": 1.0, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{engine.url}/v1/chat/completions", json=body, timeout=0.5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = stats(engine)
        if now["aborted"] == before["aborted"] + 1 and now["running"] == 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"generation was not aborted: {stats(engine)}")
