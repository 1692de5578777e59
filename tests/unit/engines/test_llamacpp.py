"""The llama.cpp adapter's command lines, profiles, readiness and usage rewriting."""

import sys
from pathlib import Path
from typing import Any

import pytest

from modelfleet.engines import llamacpp
from modelfleet.engines.base import CHAT, COMPLETION, EMBEDDING
from modelfleet.engines.llamacpp import (
    LlamaCppAdapter,
    chunk_with_cache,
    event_with_cache,
    is_gguf,
    underscore_flags,
    usage_with_cache,
)
from modelfleet.errors import ConfigError
from modelfleet.settings import ModelConfig, Profile

GGUF = "/models/q.gguf"
SERVER_HEAD = ["llama-server", "-m", GGUF, "--host", "127.0.0.1", "--port", "9001",
               "--alias", "q"]
PYTHON_HEAD = [sys.executable, "-m", "llama_cpp.server", "--model", GGUF, "--host", "127.0.0.1",
               "--port", "9001", "--model_alias", "q"]
PYTHON_ENV = {"HOST": "127.0.0.1", "PORT": "9001"}
GPUS = Profile(name="gpu", devices=["cuda:1", "cuda:2"])
CPU = Profile(name="cpu", devices=["cpu"])


@pytest.fixture
def binary(monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-server on PATH."""
    monkeypatch.setattr(llamacpp.shutil, "which", lambda name: f"/usr/local/bin/{name}")


@pytest.fixture
def python(monkeypatch: pytest.MonkeyPatch) -> None:
    """No llama-server: llama-cpp-python's server."""
    monkeypatch.setattr(llamacpp.shutil, "which", lambda name: None)


def cfg(task: str = "auto", **kw: Any) -> ModelConfig:
    return ModelConfig(name="q", engine="llamacpp", model=GGUF, task=task, **kw)


def launch(config: ModelConfig, profile: Profile | None = None) -> tuple[list[str], dict[str, str]]:
    spec = LlamaCppAdapter().launch(config, "127.0.0.1", 9001, profile)
    return spec.argv, spec.env


def test_llama_server_plain(binary: None) -> None:
    assert launch(cfg()) == ([*SERVER_HEAD, "--jinja"], {})
    assert LlamaCppAdapter().ready_path(cfg()) == "/health"
    assert LlamaCppAdapter().capabilities(cfg()) == {CHAT, COMPLETION}


def test_llama_server_args_gpus_and_key(binary: None) -> None:
    argv, env = launch(cfg(args={"n_ctx": 4096, "n_threads": 2, "flash_attn": "on"},
                           api_key="k"), GPUS)
    assert argv == [*SERVER_HEAD, "--api-key", "k", "--ctx-size", "4096", "--threads", "2",
                    "--flash-attn", "on", "--n-gpu-layers", "999", "--jinja"]
    assert env == {"CUDA_VISIBLE_DEVICES": "1,2"}


def test_llama_server_profile_layers_win_and_cpu_keeps_layers_home(binary: None) -> None:
    gpu = Profile(name="part", devices=["cuda:0"], args={"n_gpu_layers": 20})
    assert launch(cfg(), gpu)[0] == [*SERVER_HEAD, "--n-gpu-layers", "20", "--jinja"]
    assert launch(cfg(), CPU) == ([*SERVER_HEAD, "--n-gpu-layers", "0", "--jinja"], {})


def test_llama_server_embed(binary: None) -> None:
    assert launch(cfg("embed")) == ([*SERVER_HEAD, "--embeddings", "--pooling", "mean"], {})
    assert launch(cfg(args={"embedding": True, "pooling": "last"}))[0] == [
        *SERVER_HEAD, "--embeddings", "--pooling", "last"]
    assert LlamaCppAdapter().capabilities(cfg("embed")) == {EMBEDDING}
    # llama-server --embeddings refuses completions.
    assert LlamaCppAdapter().capabilities(cfg(args={"embeddings": True})) == {EMBEDDING}


def test_python_server_plain(python: None) -> None:
    assert launch(cfg()) == ([*PYTHON_HEAD, "--interrupt_requests", "false"], PYTHON_ENV)
    assert LlamaCppAdapter().ready_path(cfg()) == "/v1/models"
    assert LlamaCppAdapter().health_path == "/v1/models"


def test_python_server_args_gpus(python: None) -> None:
    argv, env = launch(cfg(args={"ctx_size": 1024, "batch_size": 64, "flash_attn": True,
                                 "chat_format": "chatml"}, api_key="k"), GPUS)
    assert argv == [*PYTHON_HEAD, "--n_ctx", "1024", "--n_batch", "64", "--flash_attn", "true",
                    "--chat_format", "chatml", "--n_gpu_layers", "-1",
                    "--interrupt_requests", "false"]
    assert env == {"CUDA_VISIBLE_DEVICES": "1,2", **PYTHON_ENV}
    assert launch(cfg(), CPU)[0] == [*PYTHON_HEAD, "--n_gpu_layers", "0",
                                     "--interrupt_requests", "false"]


def test_python_server_embed(python: None) -> None:
    tail = ["--interrupt_requests", "false", "--embedding", "true",
            "--kv_overrides", "llama.pooling_type=int:1"]
    assert launch(cfg("embed"))[0] == [*PYTHON_HEAD, *tail]
    assert launch(cfg(args={"embedding": "true"}))[0] == [*PYTHON_HEAD, *tail]
    assert LlamaCppAdapter().capabilities(cfg("embed")) == {EMBEDDING}
    assert LlamaCppAdapter().capabilities(cfg(args={"embedding": True})) == {
        CHAT, COMPLETION, EMBEDDING}


def test_refusals(python: None) -> None:
    with pytest.raises(ConfigError, match="set by modelfleet"):
        launch(cfg(args={"port": 1}))
    with pytest.raises(ConfigError, match="role"):
        LlamaCppAdapter().launch(cfg(), "127.0.0.1", 9001, None, role="prefill")
    with pytest.raises(ConfigError, match="rerank"):
        launch(cfg("rerank"))
    assert LlamaCppAdapter().capabilities(cfg("rerank")) == set()


def test_installed(monkeypatch: pytest.MonkeyPatch, binary: None) -> None:
    assert LlamaCppAdapter().installed()
    monkeypatch.setattr(llamacpp.shutil, "which", lambda name: None)
    monkeypatch.setattr(llamacpp.importlib.util, "find_spec", lambda name: None)
    assert not LlamaCppAdapter().installed()


def test_underscore_flags() -> None:
    assert underscore_flags({"a-b": 1, "c": False, "d": None, "e": ["x", "y"], "f": {"k": 1}}) == [
        "--a_b", "1", "--c", "false", "--e", "x", "y", "--f", '{"k":1}']


def test_is_gguf(tmp_path: Path) -> None:
    real = tmp_path / "m.bin"
    real.write_bytes(b"GGUF\x03\x00\x00\x00")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04")
    assert is_gguf(real) and is_gguf(str(tmp_path / "later.GGUF"))
    assert not is_gguf(fake) and not is_gguf(tmp_path) and not is_gguf(tmp_path / "x.bin")
    assert is_gguf(Path(__file__).parents[3] / "src" / "modelfleet" / "assets"
                   / "tiny-chat-gguf" / "tiny-chat.gguf")


TIMINGS = {"cache_n": 236, "prompt_n": 1, "prompt_ms": 30.9, "predicted_n": 35}


def test_usage_with_cache_fills_usage_from_timings() -> None:
    answer = {"id": "x", "usage": {"prompt_tokens": 237, "completion_tokens": 35,
                                   "total_tokens": 272}, "timings": TIMINGS}
    out = usage_with_cache(answer)
    assert out["usage"] == {"prompt_tokens": 237, "completion_tokens": 35, "total_tokens": 272,
                            "cache_n": 236, "prompt_n": 1,
                            "prompt_tokens_details": {"cached_tokens": 236}}
    assert out["timings"] == TIMINGS and "cache_n" not in answer["usage"]  # input untouched


def test_usage_with_cache_builds_missing_usage_and_keeps_details() -> None:
    assert usage_with_cache({"timings": TIMINGS})["usage"] == {
        "prompt_tokens": 237, "completion_tokens": 35, "total_tokens": 272, "cache_n": 236,
        "prompt_n": 1, "prompt_tokens_details": {"cached_tokens": 236}}
    answer = {"usage": {"prompt_tokens": 3, "prompt_tokens_details": {"audio_tokens": 0}},
              "timings": {"cache_n": 2, "prompt_n": 1}}
    assert usage_with_cache(answer)["usage"]["prompt_tokens_details"] == {
        "audio_tokens": 0, "cached_tokens": 2}


def test_usage_with_cache_leaves_answers_without_timings() -> None:
    for answer in ({"usage": {"prompt_tokens": 3}}, {"timings": "x"},
                   {"timings": {"prompt_n": 1}}, {}):
        assert usage_with_cache(answer) is answer


def test_chunk_with_cache_only_touches_the_usage_chunk() -> None:
    delta = {"choices": [{"delta": {"content": "hi"}}], "timings": TIMINGS}
    assert chunk_with_cache(delta) is delta
    final = {"choices": [], "usage": {"prompt_tokens": 237}, "timings": TIMINGS}
    assert chunk_with_cache(final)["usage"]["cache_n"] == 236


def test_event_with_cache() -> None:
    line = b'data: {"choices":[],"usage":{"prompt_tokens":237},"timings":{"cache_n":236,' \
           b'"prompt_n":1}}'
    assert event_with_cache(line) == (
        b'data: {"choices":[],"usage":{"prompt_tokens":237,"cache_n":236,"prompt_n":1,'
        b'"prompt_tokens_details":{"cached_tokens":236}},"timings":{"cache_n":236,'
        b'"prompt_n":1}}')
    for other in (b"data: [DONE]", b": ping", b'data: {"usage":{}}', b'data: {"timings" "usage"'):
        assert event_with_cache(other) == other
