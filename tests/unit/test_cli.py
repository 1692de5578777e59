from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from modelfleet.cli import app
from modelfleet.cli_common import parse_assignments
from tests.helpers import free_port

runner = CliRunner()
CLOSED = f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_cli_config_check_ok(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("models:\n  - {name: sim, engine: simulator, model: s, aliases: [s1]}\n"
                    "  - {name: big, engine: vllm, model: /m/q}\n")
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "2 model(s), valid" in result.output
    assert "sim" in result.output and "vllm" in result.output


def test_cli_config_check_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - {name: qwen, model: /m/q, idle_timeout: -5}\n")
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}: model 'qwen' (models[0]), field idle_timeout" in result.output


def test_parse_assignments_nests_dotted_keys_and_reads_json() -> None:
    assert parse_assignments(["a.b=1", "a.c=x y", "d=true", "e=[1, 2]", "f={\"g\": null}",
                              "h=", "i=a=b"]) == {
        "a": {"b": 1, "c": "x y"}, "d": True, "e": [1, 2], "f": {"g": None}, "h": "",
        "i": "a=b"}
    for bad in (["novalue"], ["=1"], ["a=1", "a.b=2"]):
        with pytest.raises(typer.BadParameter):
            parse_assignments(bad)


def test_cli_config_set_needs_key_value() -> None:
    result = runner.invoke(app, ["config", "set", "max_concurrent_models", "--url", CLOSED])
    assert result.exit_code == 2 and "is not KEY=VALUE" in result.output


def test_cli_unreachable_gateway_is_one_line() -> None:
    for args in (["models"], ["models", "list"], ["logs", "m", "-f"], ["config", "get"],
                 ["start", "m"], ["models", "show", "m"]):
        result = runner.invoke(app, [*args, "--url", CLOSED])
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith(f"GATEWAY_UNREACHABLE: cannot reach {CLOSED}"), args
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_models_add_needs_a_name(tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "add", "-e", "simulator", "--url", CLOSED])
    assert result.exit_code == 2 and "NAME" in result.output
    spec = tmp_path / "spec.json"
    spec.write_text("[1, 2]")
    result = runner.invoke(app, ["models", "add", "x", "--file", str(spec), "--url", CLOSED])
    assert result.exit_code == 2 and "not a mapping" in result.output


def test_cli_models_rm_asks_first() -> None:
    result = runner.invoke(app, ["models", "rm", "m", "--url", CLOSED], input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert "GATEWAY_UNREACHABLE" not in result.output  # nothing was sent
