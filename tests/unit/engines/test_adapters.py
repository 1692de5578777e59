import json
import sys
from pathlib import Path

from modelfleet.engines import adapter_for
from modelfleet.engines.base import flag_args
from modelfleet.engines.tasks import detect_task
from modelfleet.fleet.defaults import TINY_CHAT, minilm_path
from modelfleet.settings import ModelConfig, Profile


def test_flag_args_spellings() -> None:
    assert flag_args({"max_model_len": 2048, "trust_remote_code": True, "enforce_eager": False,
                      "lora_modules": ["a=/x", "b=/y"], "x": None}) == [
        "--max-model-len", "2048", "--trust-remote-code", "--lora-modules", "a=/x", "b=/y"]
    assert flag_args({"kv_transfer_config": {"kv_role": "kv_producer"}}) == [
        "--kv-transfer-config", '{"kv_role":"kv_producer"}']


def test_builtin_adapter_command_line() -> None:
    cfg = ModelConfig(name="tiny", model="/m/tiny", task="chat", args={"max_concurrency": 2})
    spec = adapter_for("builtin").launch(cfg, "127.0.0.1", 9001, None)
    assert spec.argv == [sys.executable, "-m", "modelfleet.engines.builtin_server",
                         "--model", "/m/tiny", "--host", "127.0.0.1", "--port", "9001",
                         "--served-model-name", "tiny", "--task", "chat",
                         "--max-concurrency", "2"]
    assert spec.env["HF_HUB_OFFLINE"] == "1"


def test_builtin_adapter_profile_sets_devices() -> None:
    cfg = ModelConfig(name="m", model="/m", task="chat")
    profile = Profile(name="two", devices=["cuda:0", "cuda:3"], args={"dtype": "float16"})
    spec = adapter_for("builtin").launch(cfg, "127.0.0.1", 1, profile)
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "0,3"
    assert spec.argv[-4:] == ["--dtype", "float16", "--device", "cuda"]


def test_detect_task(tmp_path: Path) -> None:
    assert detect_task(tmp_path) == "chat"
    (tmp_path / "config.json").write_text(json.dumps(
        {"architectures": ["XLMRobertaForSequenceClassification"]}))
    assert detect_task(tmp_path) == "rerank"
    (tmp_path / "modules.json").write_text("[]")
    assert detect_task(tmp_path) == "embed"


def test_default_model_paths_exist() -> None:
    minilm = minilm_path()
    assert minilm is not None and detect_task(minilm) == "embed"
    assert detect_task(TINY_CHAT) == "chat"


def test_model_from_path_picks_the_engine_by_file() -> None:
    from modelfleet.fleet.defaults import ASSETS, model_from_path

    gguf = model_from_path(str(ASSETS / "tiny-chat-gguf" / "tiny-chat.gguf"))
    assert (gguf.name, gguf.engine) == ("tiny-chat", "llamacpp")
    hf = model_from_path(str(TINY_CHAT), "mine")
    assert (hf.name, hf.engine) == ("mine", "builtin")
