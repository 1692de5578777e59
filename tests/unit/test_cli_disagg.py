"""Seed 000's serve flags: address lists and the model they make."""

from pathlib import Path

import pytest

from modelfleet.cli_disagg import endpoint_model, expand_list_flags


def test_lists_take_several_values_after_one_flag() -> None:
    argv = ["serve", "--model", "/m/Qwen", "--encode-addr-list", "/tmp/e0", "/tmp/e1",
            "--pd-addr-list", "/tmp/pd0", "--port", "5580"]
    assert expand_list_flags(argv) == [
        "serve", "--model", "/m/Qwen", "--encode-addr-list", "/tmp/e0", "--encode-addr-list",
        "/tmp/e1", "--pd-addr-list", "/tmp/pd0", "--port", "5580"]
    repeated = ["--pd-addr-list", "a:1", "--pd-addr-list", "b:2"]
    assert expand_list_flags(repeated) == repeated
    # a list flag with no value stays, for the parser to refuse
    assert expand_list_flags(["--pd-addr-list", "--port", "1"]) == [
        "--pd-addr-list", "--port", "1"]
    assert expand_list_flags(["serve", "--pd-addr-list"]) == ["serve", "--pd-addr-list"]


def test_a_path_names_the_model_and_is_its_alias_and_upstream_name() -> None:
    cfg = endpoint_model("/workspace/models/Qwen2.5-VL-7B-Instruct", None, {
        "encode": ["/tmp/encoder_0"], "pd": ["/tmp/prefill_decode_0", "10.0.0.2:8000"]})
    assert cfg.name == "Qwen2.5-VL-7B-Instruct"
    assert cfg.aliases == ["/workspace/models/Qwen2.5-VL-7B-Instruct"]
    assert cfg.upstream_model == "/workspace/models/Qwen2.5-VL-7B-Instruct"
    assert (cfg.engine, cfg.auto_start, cfg.idle_timeout) == ("external", True, 0)
    assert [(e.address, e.role) for e in cfg.endpoints] == [
        ("/tmp/encoder_0", "encode"), ("/tmp/prefill_decode_0", "pd"), ("10.0.0.2:8000", "pd")]
    named = endpoint_model("qwen", "q", {"prefill": ["h:1"], "decode": ["h:2"]})
    assert (named.name, named.aliases, named.upstream_model) == ("q", ["qwen"], "qwen")


def test_a_layout_that_cannot_serve_is_refused() -> None:
    with pytest.raises(ValueError, match="decode instances need prefill"):
        endpoint_model("/m/q", None, {"decode": ["h:1"]})
    with pytest.raises(ValueError, match="--model"):
        endpoint_model(None, None, {"pd": ["h:1"]})
    with pytest.raises(ValueError, match="address"):
        endpoint_model("/m/q", None, {"pd": ["no such address"]})


def test_proxy_addr_that_is_a_plain_file_is_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modelfleet.cli import app

    plain = tmp_path / "proxy"
    plain.write_text("not a socket")
    result = CliRunner().invoke(app, ["serve", "--proxy-addr", str(plain), "--data-dir",
                                      str(tmp_path / "data")])
    assert result.exit_code == 2
    assert "is not a socket" in result.output
    assert plain.read_text() == "not a socket"
