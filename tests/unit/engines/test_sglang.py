import sys
from typing import Any

import pytest

from modelfleet.engines.base import CHAT, COMPLETION, EMBEDDING, RERANK
from modelfleet.engines.sglang import METRICS, SGLangAdapter, with_bootstrap
from modelfleet.errors import ConfigError
from modelfleet.settings import ModelConfig, Profile

HEAD = [sys.executable, "-m", "sglang.launch_server", "--model-path", "/models/qwen",
        "--host", "127.0.0.1", "--port", "9001", "--served-model-name", "qwen"]
TWO_GPUS = Profile(name="two", devices=["cuda:0", "cuda:1"])


def cfg(task: str = "chat", **kw: Any) -> ModelConfig:
    return ModelConfig(name="qwen", engine="sglang", model="/models/qwen", task=task, **kw)


def launch(config: ModelConfig, profile: Profile | None = None,
           role: str = "pd") -> tuple[list[str], dict[str, str]]:
    spec = SGLangAdapter().launch(config, "127.0.0.1", 9001, profile, role)
    return spec.argv, spec.env


def test_sglang_plain_model_enables_metrics() -> None:
    assert launch(cfg()) == ([*HEAD, "--enable-metrics"], {})
    assert launch(cfg(args={"enable_metrics": False})) == (HEAD, {})
    assert SGLangAdapter().health_path == "/health"


def test_sglang_two_gpu_profile_sets_devices_and_tensor_parallel() -> None:
    argv, env = launch(cfg(), TWO_GPUS)
    assert argv == [*HEAD, "--enable-metrics", "--tp-size", "2"]
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1"}
    argv, _ = launch(cfg(args={"dp_size": 2}), TWO_GPUS)
    assert argv == [*HEAD, "--enable-metrics", "--dp-size", "2"]


def test_sglang_lora_api_key_and_engine_flags() -> None:
    args = {"lora_modules": {"sql": "/loras/sql"}, "dtype": "bfloat16", "quantization": "fp8",
            "context_length": 8192, "mem_fraction_static": 0.8, "trust_remote_code": True}
    argv, _ = launch(cfg(args=args, api_key="sk-engine"))
    assert argv == [*HEAD, "--api-key", "sk-engine", "--enable-metrics",
                    "--lora-paths", "sql=/loras/sql", "--dtype", "bfloat16",
                    "--quantization", "fp8", "--context-length", "8192",
                    "--mem-fraction-static", "0.8", "--trust-remote-code"]


def test_sglang_prefill_and_decode_roles() -> None:
    argv, env = launch(cfg(args={"disaggregation_transfer_backend": "nixl"}), role="prefill")
    assert argv == [*HEAD, "--enable-metrics", "--disaggregation-mode", "prefill",
                    "--disaggregation-bootstrap-port", "10001",
                    "--disaggregation-transfer-backend", "nixl"]
    assert env == {}
    argv, _ = launch(cfg(), TWO_GPUS, role="decode")
    assert argv == [*HEAD, "--enable-metrics", "--tp-size", "2",
                    "--disaggregation-mode", "decode"]


def test_sglang_bootstrap_port_is_derived_unless_set() -> None:
    adapter = SGLangAdapter()
    assert adapter.bootstrap_port(cfg(), 9001) == 10001
    pinned = cfg(args={"disaggregation_bootstrap_port": 8998})
    assert adapter.bootstrap_port(pinned, 9001) == 8998
    argv, _ = launch(pinned, role="prefill")
    assert argv[-4:] == ["--disaggregation-mode", "prefill",
                         "--disaggregation-bootstrap-port", "8998"]


def test_sglang_encode_role_is_encoder_only() -> None:
    assert launch(cfg(), role="encode")[0] == [*HEAD, "--enable-metrics", "--encoder-only"]
    with pytest.raises(ConfigError, match="role"):
        launch(cfg(), role="verify")
    with pytest.raises(ConfigError, match="model_path"):
        launch(cfg(args={"model_path": "/other"}))


def test_sglang_embedding_and_rerank_run_as_embedding_models() -> None:
    assert launch(cfg(task="embed"))[0] == [*HEAD, "--enable-metrics", "--is-embedding"]
    assert launch(cfg(task="rerank"))[0] == [*HEAD, "--enable-metrics", "--is-embedding"]
    adapter = SGLangAdapter()
    assert adapter.capabilities(cfg(task="embed")) == {EMBEDDING}
    assert adapter.capabilities(cfg(task="rerank")) == {RERANK}
    assert adapter.capabilities(cfg()) == {CHAT, COMPLETION}


def test_sglang_bootstrap_fields_for_one_prompt_and_a_batch() -> None:
    body = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}]}
    assert with_bootstrap(body, "10.0.0.5", 10001, room=42) == {
        **body, "bootstrap_host": "10.0.0.5", "bootstrap_port": 10001, "bootstrap_room": 42}
    batch = {"model": "qwen", "prompt": ["a", "b"]}
    assert with_bootstrap(batch, "h", 10001, room=7) == {
        **batch, "bootstrap_host": ["h", "h"], "bootstrap_port": [10001, 10001],
        "bootstrap_room": [7, 8]}
    tokens = {"prompt": [1, 2, 3]}
    assert with_bootstrap(tokens, "h", 1, room=1)["bootstrap_room"] == 1
    room = with_bootstrap(body, "h", 1)["bootstrap_room"]
    assert isinstance(room, int) and 0 <= room < 2**62


def test_sglang_metric_names() -> None:
    assert METRICS["requests_waiting"] == "sglang:num_queue_reqs"
    assert SGLangAdapter.metrics["ttft_seconds"] == "sglang:time_to_first_token_seconds"
