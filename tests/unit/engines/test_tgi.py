from typing import Any

import pytest

from modelfleet.engines import tgi
from modelfleet.engines.base import CHAT, COMPLETION
from modelfleet.engines.tgi import (
    TGIAdapter,
    completion_to_generate,
    generate_parameters,
    generate_to_completion,
)
from modelfleet.errors import ConfigError, InvalidRequestError
from modelfleet.settings import ModelConfig, Profile

HEAD = ["text-generation-launcher", "--model-id", "/models/qwen", "--hostname", "127.0.0.1",
        "--port", "9001"]
PORTS = ["--prometheus-port", "10001", "--shard-uds-path", "/tmp/modelfleet-tgi-9001",
         "--master-port", "11001"]


def cfg(task: str = "auto", **kw: Any) -> ModelConfig:
    return ModelConfig(name="qwen", engine="tgi", model="/models/qwen", task=task, **kw)


def launch(config: ModelConfig, profile: Profile | None = None,
           role: str = "pd") -> tuple[list[str], dict[str, str]]:
    spec = TGIAdapter().launch(config, "127.0.0.1", 9001, profile, role)
    return spec.argv, spec.env


def test_tgi_plain_model_gets_its_own_side_ports() -> None:
    assert launch(cfg()) == ([*HEAD, *PORTS], {})
    assert TGIAdapter().health_path == "/health"
    assert TGIAdapter().capabilities(cfg()) == {CHAT, COMPLETION}


def test_tgi_two_gpu_profile_shards() -> None:
    argv, env = launch(cfg(), Profile(name="two", devices=["cuda:0", "cuda:1"]))
    assert argv == [*HEAD, *PORTS, "--num-shard", "2"]
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1"}


def test_tgi_lora_api_key_and_engine_flags() -> None:
    args = {"lora_modules": {"sql": "/loras/sql", "chat": "/loras/chat"}, "dtype": "bfloat16",
            "max_input_tokens": 4096, "max_total_tokens": 8192, "sharded": False,
            "trust_remote_code": True}
    profile = Profile(name="one", devices=["cuda:1"], args={"cuda_memory_fraction": 0.9})
    argv, env = launch(cfg(args=args, api_key="sk-engine"), profile)
    assert argv == [*HEAD, "--api-key", "sk-engine", *PORTS,
                    "--lora-adapters", "sql=/loras/sql,chat=/loras/chat",
                    "--dtype", "bfloat16", "--max-input-tokens", "4096",
                    "--max-total-tokens", "8192", "--sharded", "false",
                    "--trust-remote-code", "--cuda-memory-fraction", "0.9"]
    assert env == {"CUDA_VISIBLE_DEVICES": "1"}


def test_tgi_user_ports_and_quantize_win() -> None:
    argv, _ = launch(cfg(args={"prometheus_port": 9400, "quantize": "awq"}))
    assert argv == [*HEAD, "--prometheus-port", "9400", "--shard-uds-path",
                    "/tmp/modelfleet-tgi-9001", "--master-port", "11001", "--quantize", "awq"]


def test_tgi_refuses_roles_tasks_and_reserved_args() -> None:
    with pytest.raises(ConfigError, match="prefill"):
        launch(cfg(), role="prefill")
    with pytest.raises(ConfigError, match="embed"):
        launch(cfg(task="embed"))
    with pytest.raises(ConfigError, match="model_id"):
        launch(cfg(args={"model_id": "other"}))


def test_tgi_installed_looks_for_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tgi.shutil, "which", lambda name: None)
    assert not TGIAdapter().installed()
    monkeypatch.setattr(tgi.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert TGIAdapter().installed()


def test_tgi_completion_request_to_generate_body() -> None:
    body = {"model": "qwen", "prompt": "Hello", "max_tokens": 32, "temperature": 0.7,
            "top_p": 1.0, "stop": "\n", "seed": 7, "presence_penalty": 0.5, "echo": False}
    assert completion_to_generate(body) == {"inputs": "Hello", "parameters": {
        "max_new_tokens": 32, "do_sample": True, "temperature": 0.7, "stop": ["\n"],
        "seed": 7, "return_full_text": False, "details": True}}


def test_tgi_greedy_completion_is_do_sample_false() -> None:
    body = {"prompt": ["Hi"], "temperature": 0, "top_p": 0.9, "top_k": 0,
            "frequency_penalty": 0.5, "repetition_penalty": 1.1}
    assert completion_to_generate(body) == {"inputs": "Hi", "parameters": {
        "do_sample": False, "top_p": 0.9, "repetition_penalty": 1.1,
        "frequency_penalty": 0.5, "details": True}}


def test_tgi_completion_request_it_cannot_express() -> None:
    with pytest.raises(InvalidRequestError) as err:
        completion_to_generate({"prompt": ["a", "b"]})
    assert err.value.param == "prompt"
    with pytest.raises(InvalidRequestError):
        completion_to_generate({"prompt": [1, 2, 3]})
    with pytest.raises(InvalidRequestError) as err:
        completion_to_generate({"prompt": "a", "n": 2})
    assert err.value.param == "n"


def test_tgi_generate_parameters_of_seed_004_requests() -> None:
    seed = {"max_new_tokens": 128, "temperature": 0.7, "top_p": 0.9, "do_sample": True,
            "stop": []}
    assert generate_parameters(seed) == seed
    assert generate_parameters({"temperature": 0.0, "top_p": 1.0, "typical_p": 0,
                                "top_k": -1, "seed": None}) == {"do_sample": False}


def test_tgi_generate_response_to_completion_with_usage() -> None:
    response = {"generated_text": " world", "details": {
        "finish_reason": "eos_token", "generated_tokens": 3, "seed": None,
        "prefill": [], "tokens": [{"id": 1, "text": " world", "logprob": -0.1}]}}
    assert generate_to_completion(response, model="qwen", prompt_tokens=5,
                                  completion_id="cmpl-1", created=1700000000) == {
        "id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": "qwen",
        "choices": [{"index": 0, "text": " world", "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


def test_tgi_finish_reasons_and_missing_details() -> None:
    def finish(reason: str) -> Any:
        response = {"generated_text": "x", "details": {"finish_reason": reason,
                                                       "generated_tokens": 1}}
        return generate_to_completion(response, model="m")["choices"][0]["finish_reason"]

    assert [finish("length"), finish("stop_sequence"), finish("eos_token")] == [
        "length", "stop", "stop"]
    bare = generate_to_completion({"generated_text": "x"}, model="m")
    assert bare["choices"][0]["finish_reason"] is None
    assert bare["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert bare["id"].startswith("cmpl-") and isinstance(bare["created"], int)
    prefill = {"generated_text": "x", "details": {
        "finish_reason": "length", "generated_tokens": 1, "prefill": [{"id": 1}, {"id": 2}]}}
    assert generate_to_completion(prefill, model="m")["usage"]["prompt_tokens"] == 2


def test_tgi_metric_names() -> None:
    assert tgi.METRICS["requests_waiting"] == "tgi_queue_size"
    assert TGIAdapter.metrics["e2e_seconds"] == "tgi_request_duration"
