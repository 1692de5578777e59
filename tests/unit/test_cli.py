from pathlib import Path

from typer.testing import CliRunner

from modelfleet.cli import app

runner = CliRunner()


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
