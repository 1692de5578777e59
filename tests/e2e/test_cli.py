"""The CLI against a running gateway."""

import subprocess
import sys
from pathlib import Path

from tests.helpers import simulator_model, start_gateway


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelfleet", *args], capture_output=True,
                          text=True, timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin"})


def test_cli_models_start_stop(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, [simulator_model("sim", aliases=["s"])])
    try:
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
    finally:
        gateway.stop()
