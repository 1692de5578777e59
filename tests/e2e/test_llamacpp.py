"""llama.cpp for real: gateway + llama.cpp engine processes serving the tiny GGUF model.

The engine is ``llama-server`` when it is on PATH, else llama-cpp-python's server. Without
either the tests fail (they do not skip): install the ``llamacpp`` extra.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.engines.llamacpp import LlamaCppAdapter
from tests.helpers import REPO, TINY_CHAT, Gateway, start_gateway

pytestmark = pytest.mark.e2e

GGUF = REPO / "src" / "modelfleet" / "assets" / "tiny-chat-gguf" / "tiny-chat.gguf"
HIDDEN_SIZE = json.loads((TINY_CHAT / "config.json").read_text())["hidden_size"]
HELLO = [{"role": "user", "content": "What is 2 plus 3?"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if not LlamaCppAdapter().installed():
        pytest.fail("llama.cpp is not installed: neither llama-server on PATH nor "
                    "llama-cpp-python with its [server] extra (pip install -e '.[llamacpp]')")
    assert GGUF.is_file(), f"{GGUF} is missing: run scripts/make_tiny_gguf.py"
    tmp = tmp_path_factory.mktemp("llamacpp")
    common = {"engine": "llamacpp", "model": str(GGUF), "args": {"n_ctx": 512, "n_threads": 1}}
    gateway = start_gateway(tmp, [
        {"name": "tiny-gguf", **common},
        {"name": "tiny-gguf-embed", "task": "embed", **common},
    ])
    yield gateway
    gateway.stop()


def test_llamacpp_chat(gw: Gateway) -> None:
    resp = gw.client().chat.completions.create(model="tiny-gguf", messages=HELLO, max_tokens=24,
                                               temperature=0)
    choice = resp.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert "<|" not in choice.message.content  # control tokens are not printed
    assert choice.finish_reason in ("stop", "length")
    assert resp.model == "tiny-gguf"
    assert resp.usage is not None and resp.usage.prompt_tokens > 5
    assert 0 < resp.usage.completion_tokens <= 24
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_llamacpp_chat_streaming(gw: Gateway) -> None:
    chunks = list(gw.client().chat.completions.create(
        model="tiny-gguf", messages=HELLO, max_tokens=24, temperature=0, stream=True))
    pieces = [c.choices[0].delta.content for c in chunks
              if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    whole = gw.client().chat.completions.create(model="tiny-gguf", messages=HELLO,
                                                max_tokens=24, temperature=0)
    assert "".join(pieces) == whole.choices[0].message.content  # greedy: same answer


def test_llamacpp_completions(gw: Gateway) -> None:
    resp = gw.client().completions.create(model="tiny-gguf", prompt="Once upon a time",
                                          max_tokens=12, temperature=0)
    assert resp.choices[0].text and resp.usage is not None
    assert 0 < resp.usage.completion_tokens <= 12


def test_llamacpp_embeddings(gw: Gateway) -> None:
    texts = ["Hello there", "What is the capital of France?"]
    resp = gw.client().embeddings.create(model="tiny-gguf-embed", input=texts)
    vectors = [d.embedding for d in resp.data]
    assert [len(v) for v in vectors] == [HIDDEN_SIZE, HIDDEN_SIZE]
    assert all(math.isfinite(x) for v in vectors for x in v)
    assert vectors[0] != vectors[1]


def test_gguf_is_the_twin_of_the_hf_model(tmp_path: Path) -> None:
    """The checked-in GGUF is what the script makes of today's tiny-chat, byte for byte."""
    spec = importlib.util.spec_from_file_location("make_tiny_gguf",
                                                  REPO / "scripts" / "make_tiny_gguf.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.convert(TINY_CHAT, tmp_path / "fresh.gguf")
    assert (tmp_path / "fresh.gguf").read_bytes() == GGUF.read_bytes(), (
        "tiny-chat changed: rerun scripts/make_tiny_gguf.py")
