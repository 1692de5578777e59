import json
import sys
from typing import Any

import pytest

from modelfleet.engines import vllm
from modelfleet.engines.base import CHAT, COMPLETION, EMBEDDING, RERANK, VISION, side_port
from modelfleet.engines.vllm import VLLMAdapter, decode_request, encode_request, prefill_request
from modelfleet.errors import ConfigError
from modelfleet.settings import ModelConfig, Profile

HEAD = ["vllm", "serve", "/models/qwen", "--host", "127.0.0.1", "--port", "9001",
        "--served-model-name", "qwen"]
TWO_GPUS = Profile(name="two", devices=["cuda:0", "cuda:1"])


@pytest.fixture(autouse=True)
def _vllm_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm.shutil, "which", lambda name: f"/usr/bin/{name}")


def cfg(name: str = "qwen", task: str = "chat", **kw: Any) -> ModelConfig:
    return ModelConfig(name=name, engine="vllm", model="/models/qwen", task=task, **kw)


def launch(config: ModelConfig, profile: Profile | None = None, role: str = "pd",
           host: str = "127.0.0.1", port: int = 9001) -> tuple[list[str], dict[str, str]]:
    spec = VLLMAdapter().launch(config, host, port, profile, role)
    return spec.argv, spec.env


def test_vllm_plain_model() -> None:
    assert launch(cfg()) == (HEAD, {})
    assert VLLMAdapter().health_path == "/health"


def test_vllm_two_gpu_profile_sets_devices_and_tensor_parallel() -> None:
    argv, env = launch(cfg(), TWO_GPUS)
    assert argv == [*HEAD, "--tensor-parallel-size", "2"]
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1"}


def test_vllm_profile_parallelism_is_not_overridden() -> None:
    profile = Profile(name="pp", devices=["cuda:2", "cuda:3"], args={"pipeline_parallel_size": 2})
    argv, env = launch(cfg(), profile)
    assert argv == [*HEAD, "--pipeline-parallel-size", "2"]
    assert env == {"CUDA_VISIBLE_DEVICES": "2,3"}


def test_vllm_profile_args_override_model_args() -> None:
    profile = Profile(name="one", devices=["cuda:0"], args={"gpu_memory_utilization": 0.8})
    argv, _ = launch(cfg(args={"gpu_memory_utilization": 0.9, "max_num_seqs": 64}), profile)
    assert argv == [*HEAD, "--gpu-memory-utilization", "0.8", "--max-num-seqs", "64"]


def test_vllm_lora_modules_enable_lora() -> None:
    argv, _ = launch(cfg(args={"lora_modules": {"sql": "/loras/sql", "chat": "/loras/chat"}}))
    assert argv == [*HEAD, "--enable-lora", "--lora-modules", "sql=/loras/sql", "chat=/loras/chat"]
    argv, _ = launch(cfg(args={"max_lora_rank": 64, "lora_modules": ["sql=/loras/sql"]}))
    assert argv == [*HEAD, "--max-lora-rank", "64", "--enable-lora", "--lora-modules",
                    "sql=/loras/sql"]


def test_vllm_api_key() -> None:
    argv, _ = launch(cfg(api_key="sk-engine"))
    assert argv == [*HEAD, "--api-key", "sk-engine"]


def test_vllm_dtype_quantization_len_and_memory() -> None:
    args = {"dtype": "bfloat16", "quantization": "awq", "max_model_len": 8192,
            "gpu_memory_utilization": 0.85, "trust_remote_code": True, "enforce_eager": False,
            "chat_template": "/t/chat.jinja"}
    argv, _ = launch(cfg(args=args))
    assert argv == [*HEAD, "--dtype", "bfloat16", "--quantization", "awq",
                    "--max-model-len", "8192", "--gpu-memory-utilization", "0.85",
                    "--trust-remote-code", "--chat-template", "/t/chat.jinja"]


def test_vllm_prefill_is_nixl_kv_producer() -> None:
    argv, env = launch(cfg(), role="prefill")
    assert argv == [*HEAD, "--enable-request-id-headers", "--kv-transfer-config",
                    '{"kv_connector":"NixlConnector","kv_role":"kv_producer"}']
    assert env == {"VLLM_NIXL_SIDE_CHANNEL_PORT": "10001"}


def test_vllm_decode_is_nixl_kv_consumer_advertising_its_host() -> None:
    argv, env = launch(cfg(), TWO_GPUS, role="decode", host="10.0.0.5", port=9002)
    assert argv == ["vllm", "serve", "/models/qwen", "--host", "10.0.0.5", "--port", "9002",
                    "--served-model-name", "qwen", "--tensor-parallel-size", "2",
                    "--enable-request-id-headers", "--kv-transfer-config",
                    '{"kv_connector":"NixlConnector","kv_role":"kv_consumer"}']
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1", "VLLM_NIXL_SIDE_CHANNEL_PORT": "10002",
                   "VLLM_NIXL_SIDE_CHANNEL_HOST": "10.0.0.5"}


def test_vllm_pd_has_no_transfer_config() -> None:
    argv, env = launch(cfg(args={"kv_connector": "NixlConnector"}), role="pd")
    assert (argv, env) == (HEAD, {})


def test_vllm_encode_is_ec_producer_without_prefix_caching() -> None:
    argv, env = launch(cfg(name="qwen-vl"), role="encode")
    assert argv[argv.index("--served-model-name") + 1] == "qwen-vl"
    assert argv[9:] == [
        "--no-enable-prefix-caching", "--enable-request-id-headers", "--ec-transfer-config",
        '{"ec_connector":"ECExampleConnector","ec_connector_extra_config":'
        '{"shared_storage_path":"/tmp/modelfleet-ec/qwen-vl"},"ec_role":"ec_producer"}']
    assert env == {}


def test_vllm_pd_consumes_encoder_output_when_ec_connector_is_set() -> None:
    argv, env = launch(cfg(args={"ec_connector": "ECExampleConnector"}), role="pd")
    assert argv == [*HEAD, "--ec-transfer-config",
                    '{"ec_connector":"ECExampleConnector","ec_connector_extra_config":'
                    '{"shared_storage_path":"/tmp/modelfleet-ec/qwen"},"ec_role":"ec_consumer"}']
    assert env == {}


def test_vllm_prefill_with_encoder_disaggregation_gets_both_configs() -> None:
    argv, _ = launch(cfg(args={"ec_connector": "ECExampleConnector"}), role="prefill")
    kv = json.loads(argv[argv.index("--kv-transfer-config") + 1])
    ec = json.loads(argv[argv.index("--ec-transfer-config") + 1])
    assert kv == {"kv_connector": "NixlConnector", "kv_role": "kv_producer"}
    assert ec["ec_role"] == "ec_consumer"
    argv, _ = launch(cfg(args={"ec_connector": "ECExampleConnector"}), role="decode")
    assert "--ec-transfer-config" not in argv


def test_vllm_user_transfer_config_wins_and_kv_both_is_kept() -> None:
    user = {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both",
            "kv_connector_extra_config": {"discard_partial_chunks": False}}
    argv, env = launch(cfg(args={"kv_transfer_config": user}), role="decode")
    assert json.loads(argv[-1]) == user  # kv_both is valid on either side
    assert env == {}  # no Nixl side channel for another connector
    argv, _ = launch(cfg(args={"kv_transfer_config": {"kv_connector_extra_config": {}}}),
                     role="decode")
    assert json.loads(argv[-1])["kv_role"] == "kv_consumer"  # unset: the role decides
    argv, _ = launch(cfg(args={"kv_transfer_config": user}), role="pd")
    assert json.loads(argv[-1]) == user  # pd passes the user's config as is
    argv, _ = launch(cfg(args={"kv_transfer_config": user}), role="encode")
    assert "--kv-transfer-config" not in argv


def test_vllm_user_ec_config_merges_extra_config() -> None:
    user = {"ec_connector_extra_config": {"shared_storage_path": "/shared/ec"}}
    argv, _ = launch(cfg(args={"ec_transfer_config": user}), role="encode")
    assert json.loads(argv[-1]) == {
        "ec_connector": "ECExampleConnector",
        "ec_connector_extra_config": {"shared_storage_path": "/shared/ec"},
        "ec_role": "ec_producer"}


def test_vllm_p2p_nccl_gets_per_instance_ports() -> None:
    user = {"kv_buffer_size": "8e9",
            "kv_connector_extra_config": {"proxy_ip": "10.0.0.1", "proxy_port": "30001"}}
    argv, env = launch(cfg(args={"kv_connector": "P2pNcclConnector",
                                 "kv_transfer_config": user}), role="prefill")
    assert json.loads(argv[-1]) == {
        "kv_port": 11001, "kv_connector_extra_config": {
            "http_port": 9001, "proxy_ip": "10.0.0.1", "proxy_port": "30001"},
        "kv_connector": "P2pNcclConnector", "kv_buffer_size": "8e9", "kv_role": "kv_producer"}
    assert env == {}


def test_vllm_embedding_and_rerank_use_the_pooling_runner() -> None:
    argv, _ = launch(cfg(task="embed"))
    assert argv == [*HEAD, "--runner", "pooling"]
    assert VLLMAdapter().capabilities(cfg(task="embed")) == {EMBEDDING, RERANK}
    argv, _ = launch(cfg(task="rerank"))
    assert argv == [*HEAD, "--runner", "pooling"]
    assert VLLMAdapter().capabilities(cfg(task="rerank")) == {RERANK}


def test_vllm_capabilities_of_generative_models() -> None:
    assert VLLMAdapter().capabilities(cfg()) == {CHAT, COMPLETION}
    with_ec = cfg(args={"ec_connector": "ECExampleConnector"})
    assert VLLMAdapter().capabilities(with_ec) == {CHAT, COMPLETION, VISION}


def test_vllm_refuses_reserved_args_and_unknown_roles() -> None:
    with pytest.raises(ConfigError, match="port"):
        launch(cfg(args={"port": 1}))
    with pytest.raises(ConfigError, match="served_model_name"):
        launch(cfg(), Profile(name="p", args={"served_model_name": "x"}))
    with pytest.raises(ConfigError, match="api_key"):
        launch(cfg(args={"api_key": "k"}))
    with pytest.raises(ConfigError, match="role"):
        launch(cfg(), role="verify")


def test_vllm_executable_falls_back_to_this_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm.shutil, "which", lambda name: None)
    monkeypatch.setattr(vllm.importlib.util, "find_spec", lambda name: None)
    assert not VLLMAdapter().installed()
    assert VLLMAdapter().executable() == ["vllm", "serve"]
    monkeypatch.setattr(vllm.importlib.util, "find_spec", lambda name: object())
    assert VLLMAdapter().installed()
    assert VLLMAdapter().executable() == [sys.executable, "-m", "vllm.entrypoints.cli.main",
                                          "serve"]


def test_vllm_prefill_and_decode_requests() -> None:
    body = {"model": "qwen", "prompt": "hi", "max_tokens": 64, "stream": True,
            "stream_options": {"include_usage": True}, "min_tokens": 2}
    first = prefill_request(body)
    assert first == {"model": "qwen", "prompt": "hi", "max_tokens": 1, "stream": False,
                     "kv_transfer_params": {
                         "do_remote_decode": True, "do_remote_prefill": False,
                         "remote_engine_id": None, "remote_block_ids": None,
                         "remote_host": None, "remote_port": None}}
    assert body["max_tokens"] == 64  # the client's body is left alone
    handle = {"do_remote_prefill": True, "remote_engine_id": "e1", "remote_block_ids": [1, 2]}
    assert decode_request(body, {"kv_transfer_params": handle}) == {
        **body, "kv_transfer_params": handle}
    assert decode_request(body, {}) == body


def test_vllm_side_port_stays_in_range() -> None:
    assert side_port(9001, 1000) == 10001
    assert side_port(65000, 1000) == 1488
    assert vllm.METRICS["itl_seconds"] == "vllm:inter_token_latency_seconds"
    assert VLLMAdapter.metrics["requests_waiting"] == "vllm:num_requests_waiting"


def test_vllm_contradicting_kv_role_is_refused() -> None:
    with pytest.raises(ConfigError, match="a prefill instance cannot have kv_role"):
        launch(cfg(args={"kv_transfer_config": {"kv_role": "kv_consumer"}}), role="prefill")
    with pytest.raises(ConfigError, match="a decode instance cannot have kv_role"):
        launch(cfg(args={"kv_transfer_config": {"kv_role": "kv_producer"}}), role="decode")


def test_vllm_roles_with_an_encoder_make_pd_and_prefill_consumers() -> None:
    # {encode, pd}: the pd instance reads the encoder's output without any EC knob.
    config = cfg(name="vl", roles={"encode": 1, "pd": 1})
    argv, _ = launch(config, role="pd")
    ec = json.loads(argv[argv.index("--ec-transfer-config") + 1])
    assert ec == {"ec_connector": "ECExampleConnector", "ec_connector_extra_config": {
        "shared_storage_path": "/tmp/modelfleet-ec/vl"}, "ec_role": "ec_consumer"}
    assert "--enable-request-id-headers" not in argv  # pd: the plain command line
    argv, _ = launch(cfg(name="vl", roles={"encode": 1, "prefill": 1, "decode": 1}),
                     role="prefill")
    assert json.loads(argv[argv.index("--ec-transfer-config") + 1])["ec_role"] == \
        "ec_consumer"
    assert json.loads(argv[argv.index("--kv-transfer-config") + 1])["kv_role"] == \
        "kv_producer"
    argv, _ = launch(cfg(name="vl", roles={"encode": 1, "prefill": 1, "decode": 1}),
                     role="decode")
    assert "--ec-transfer-config" not in argv
    # without an encoder in the layout, pd stays plain
    assert launch(cfg(roles={"pd": 2}), role="pd") == (HEAD, {})


def test_vllm_encode_request_is_one_step_and_not_streamed() -> None:
    body = {"model": "vl", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": True}, "max_completion_tokens": 50,
            "min_tokens": 3}
    assert encode_request(body) == {
        "model": "vl", "messages": [{"role": "user", "content": "hi"}], "stream": False,
        "max_tokens": 1, "max_completion_tokens": 1}
    assert body["stream"] is True


def test_vllm_prefill_request_of_a_chat_keeps_messages_and_mm_hashes() -> None:
    body = {"model": "vl", "messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 64, "stream": True, "mm_hashes": ["ab"]}
    first = prefill_request(body)
    assert first["messages"] == body["messages"] and first["mm_hashes"] == ["ab"]
    assert (first["max_tokens"], first["max_completion_tokens"], first["stream"]) == (1, 1, False)
    assert first["kv_transfer_params"]["do_remote_decode"] is True
    assert "stream_options" not in first


def test_vllm_abort_route_and_profiler() -> None:
    adapter = VLLMAdapter()
    assert adapter.can_profile(cfg())
    assert adapter.abort_path(cfg()) is None  # served only in tokens-only mode
    assert adapter.abort_path(cfg(args={"tokens_only": True})) == "/abort_requests"
