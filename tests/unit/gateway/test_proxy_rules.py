from pathlib import Path

from modelfleet.engines import adapter_for
from modelfleet.fleet.model import ManagedModel
from modelfleet.gateway.proxy import Proxy
from modelfleet.settings import ModelConfig


def _model(tmp_path: Path, **kw: object) -> ManagedModel:
    cfg = ModelConfig(name="qwen", engine="simulator", model="q", aliases=["q"], **kw)  # type: ignore[arg-type]
    return ManagedModel(cfg, adapter_for("simulator"), tmp_path, None, 10)  # type: ignore[arg-type]


def test_rules_rename_aliases_and_leave_the_rest(tmp_path: Path) -> None:
    model = _model(tmp_path)
    payload = {"model": "q", "messages": [], "top_k": 3}
    assert Proxy._apply_model_rules(model, payload) is True
    assert payload == {"model": "qwen", "messages": [], "top_k": 3}
    assert Proxy._apply_model_rules(model, payload) is False


def test_rules_fill_the_default_temperature_only_when_missing(tmp_path: Path) -> None:
    model = _model(tmp_path, limits={"default_temperature": 0.3})
    payload = {"model": "qwen", "prompt": "x"}
    assert Proxy._apply_model_rules(model, payload) is True
    assert payload["temperature"] == 0.3
    given = {"model": "qwen", "prompt": "x", "temperature": 1.1}
    assert Proxy._apply_model_rules(model, given) is False and given["temperature"] == 1.1
    embeddings = {"model": "qwen", "input": "x"}
    assert Proxy._apply_model_rules(model, embeddings) is False


def test_prepare_caps_max_tokens_and_keeps_untouched_bytes(tmp_path: Path) -> None:
    import pytest

    from modelfleet.errors import InvalidRequestError

    model = _model(tmp_path, limits={"max_tokens": 50})
    proxy = Proxy.__new__(Proxy)
    raw = b'{"model":"qwen","prompt":"x","max_tokens":50}'
    body, max_tokens = proxy.prepare(model, {"model": "qwen", "prompt": "x", "max_tokens": 50},
                                     raw)
    assert body is raw and max_tokens == 50
    for field in ("max_tokens", "max_completion_tokens"):
        with pytest.raises(InvalidRequestError) as info:
            proxy.prepare(model, {"model": "qwen", field: 51})
        assert info.value.param == field
