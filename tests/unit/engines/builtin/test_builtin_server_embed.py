"""A real embedding engine process (all-MiniLM-L6-v2), driven with the ``openai`` client."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def engine(launch_engine: Any, minilm_dir: Path) -> Iterator[Any]:
    with launch_engine(minilm_dir, "--served-model-name", "minilm") as proc:
        yield proc


@pytest.fixture(scope="module")
def client(engine: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{engine.url}/v1", api_key="unused", max_retries=0, timeout=30)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings(client: openai.OpenAI, engine: Any) -> None:
    texts = [
        "A man is playing a guitar.",
        "Someone plays the guitar.",
        "The stock market fell sharply today.",
    ]
    out = client.embeddings.create(model="anything", input=texts)
    assert out.model == "minilm" and [d.index for d in out.data] == [0, 1, 2]
    vectors = [d.embedding for d in out.data]
    assert all(len(v) == 384 for v in vectors)
    assert all(math.isclose(cosine(v, v), 1.0, abs_tol=1e-4) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    counts = [
        httpx.post(f"{engine.url}/tokenize", json={"prompt": t}).json()["count"] for t in texts
    ]
    assert out.usage.prompt_tokens == sum(counts) == out.usage.total_tokens


def test_base64_dimensions_and_token_input(engine: Any) -> None:
    url = f"{engine.url}/v1/embeddings"
    floats = httpx.post(url, json={"input": "hello there"}).json()["data"][0]["embedding"]
    raw = httpx.post(url, json={"input": "hello there", "encoding_format": "base64"}).json()
    decoded = struct.unpack("<384f", base64.b64decode(raw["data"][0]["embedding"]))
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(decoded, floats, strict=True))
    short = httpx.post(url, json={"input": "hello there", "dimensions": 64}).json()
    vector = short["data"][0]["embedding"]
    assert len(vector) == 64 and math.isclose(cosine(vector, vector), 1.0, abs_tol=1e-4)
    ids = httpx.post(f"{engine.url}/tokenize", json={"prompt": "hello there"}).json()["tokens"]
    by_ids = httpx.post(url, json={"input": [ids]}).json()
    assert cosine(by_ids["data"][0]["embedding"], floats) > 0.999
    assert by_ids["usage"]["prompt_tokens"] == len(ids)


def test_embedding_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="m", input="x", dimensions=1000)
    assert info.value.param == "dimensions"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="m", input=[])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


def test_rerank_puts_the_relevant_document_first(engine: Any) -> None:
    docs = [
        "Paris is the capital and largest city of France.",
        "Bananas are rich in potassium.",
        {"text": "The Eiffel Tower was built in 1889."},
    ]
    body = httpx.post(
        f"{engine.url}/v1/rerank",
        json={"model": "m", "query": "What is the capital of France?", "documents": docs},
    ).json()
    assert body["object"] == "rerank" and body["model"] == "minilm"
    assert [r["index"] for r in body["results"]][0] == 0
    assert body["results"][0]["document"] == {"text": docs[0]}
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["usage"]["prompt_tokens"] > 0
    top = httpx.post(
        f"{engine.url}/rerank", json={"query": "fruit nutrition", "documents": docs, "top_n": 1}
    ).json()
    assert [r["index"] for r in top["results"]] == [1]
    score = httpx.post(
        f"{engine.url}/v1/score", json={"text_1": "a cat", "text_2": ["a kitten", "a spreadsheet"]}
    ).json()
    assert score["data"][0]["score"] > score["data"][1]["score"]
