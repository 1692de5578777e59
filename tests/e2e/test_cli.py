"""The CLI against a running gateway."""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Gateway, simulator_model, start_gateway


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelfleet", *args], capture_output=True,
                          text=True, timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin"})


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path, [simulator_model("sim", aliases=["s"])])
    try:
        yield gw
    finally:
        gw.stop()


def test_cli_models_start_stop(gateway: Gateway) -> None:
    out = _cli("models", "--url", gateway.url)
    assert out.returncode == 0, out.stderr
    assert "sim" in out.stdout and "stopped" in out.stdout
    out = _cli("start", "s", "--url", gateway.url)
    assert out.returncode == 0, out.stderr
    assert "sim ready" in out.stdout or "s ready" in out.stdout
    assert gateway.info("sim")["status"] == "ready"
    assert "ready" in _cli("models", "--url", gateway.url).stdout
    out = _cli("stop", "sim", "--url", gateway.url)
    assert out.returncode == 0 and gateway.info("sim")["status"] == "stopped"
    out = _cli("start", "nope", "--url", gateway.url)
    assert out.returncode == 1 and "MODEL_NOT_FOUND" in out.stdout


def test_cli_model_commands(gateway: Gateway, tmp_path: Path) -> None:
    url = ["--url", gateway.url]
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: from-file\nengine: simulator\nmodel: ff\ntags: [filed]\n"
                    "config: {max_num_seqs: 2}\n")
    out = _cli("models", "add", "--file", str(spec), "-c", "seed=3", "-a", "ff1", *url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "added from-file" in out.stdout
    detail = gateway.get("/api/models/ff1")
    assert detail["tags"] == ["filed"] and detail["config"]["max_num_seqs"] == 2
    assert detail["config"]["seed"] == 3 and detail["engine"] == "simulator"

    out = _cli("models", "add", "cli-sim", "--engine", "simulator", "--model", "cs",
               "--alias", "cs1", "--auto-start", "--config", "max_num_seqs=4", *url)
    assert out.returncode == 0, out.stdout + out.stderr
    detail = gateway.get("/api/models/cli-sim")
    assert detail["aliases"] == ["cs1"] and detail["auto_start"] is True
    out = _cli("models", "add", "cli-sim", "-e", "simulator", "-m", "cs", *url)
    assert out.returncode == 1 and "MODEL_ALREADY_EXISTS: " in out.stdout

    out = _cli("models", "start", "cs1", *url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cli-sim ready in " in out.stdout
    assert gateway.info("cli-sim")["status"] == "ready"
    out = _cli("models", "list", "--status", "running", *url)
    assert out.returncode == 0 and "cli-sim" in out.stdout and "from-file" not in out.stdout
    out = _cli("models", "show", "cs1", *url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cli-sim" in out.stdout and "ready" in out.stdout
    assert gateway.info("cli-sim")["last_log"] in out.stdout

    out = _cli("logs", "cli-sim", "-n", "2", *url)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and lines[1].endswith(gateway.info("cli-sim")["last_log"])
    # -f: the tail, then new lines, until the model is removed
    follower = subprocess.Popen(
        [sys.executable, "-m", "modelfleet", "logs", "cli-sim", "-f", "-n", "1", *url],
        stdout=subprocess.PIPE, text=True, env={"COLUMNS": "200", "PATH": "/usr/bin"})
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()
        assert gateway.info("cli-sim")["last_log"] in first

        out = _cli("models", "restart", "cli-sim", *url)
        assert out.returncode == 0 and "cli-sim ready" in out.stdout, out.stdout
        out = _cli("models", "stop", "cli-sim", "--force", *url)
        assert out.returncode == 0 and "cli-sim stopped" in out.stdout, out.stdout
        assert gateway.info("cli-sim")["status"] == "stopped"
        out = _cli("models", "rm", "cli-sim", "--yes", *url)
        assert out.returncode == 0 and "deleted" in out.stdout, out.stdout
        rest, _ = follower.communicate(timeout=30)
        assert follower.returncode == 0
        assert "[modelfleet]" in rest and "was removed" in rest.splitlines()[-1]
    finally:
        follower.kill()  # a no-op once it has exited
        follower.wait()
    assert httpx.get(gateway.url + "/api/models/cli-sim", timeout=10).status_code == 404

    out = _cli("models", "start", "from-file", "--timeout", "0.01", *url)
    assert out.returncode == 1 and "start of from-file failed" in out.stdout
    out = _cli("logs", "nope", *url)
    assert out.returncode == 1 and "MODEL_NOT_FOUND: " in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_cli_config_get_set(gateway: Gateway) -> None:
    url = ["--url", gateway.url]
    out = _cli("config", "get", *url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout) == gateway.get("/api/config")
    out = _cli("config", "set", "max_concurrent_models=15",
               "alert_thresholds.gpu_utilization_high=85", "log_level=warning", *url)
    assert out.returncode == 0, out.stdout + out.stderr
    config = gateway.get("/api/config")
    assert json.loads(out.stdout) == config
    assert config["max_concurrent_models"] == 15 and config["log_level"] == "WARNING"
    assert config["alert_thresholds"]["gpu_utilization_high"] == 85
    assert config["alert_thresholds"]["gpu_temperature_high"] == 80  # merged, not replaced
    out = _cli("config", "get", "alert_thresholds.gpu_utilization_high", *url)
    assert out.returncode == 0 and out.stdout.strip() == "85.0"
    out = _cli("config", "set", "max_concurrent_models=0", *url)
    assert out.returncode == 1 and "INVALID_PARAMETER: " in out.stdout
    assert "max_concurrent_models" in out.stdout
    assert gateway.get("/api/config")["max_concurrent_models"] == 15
    out = _cli("config", "get", "nope", *url)
    assert out.returncode == 1 and "no setting 'nope'" in out.stdout
