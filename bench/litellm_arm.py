"""The LiteLLM proxy arm of ``bench/compare.py``, in its own virtualenv.

LiteLLM is not a dependency of modelfleet: ``ensure_installed`` makes
``bench/.litellm-venv`` (git-ignored) on first use and installs the pinned
``litellm[proxy]`` into it; later runs reuse it (a marker file names the
version, so changing the pin reinstalls). A file lock keeps two runs from
installing at once. The proxy runs with a master key and no database, the
upstreams declared as OpenAI-compatible models, and the model cost map read
from the package (``LITELLM_LOCAL_MODEL_COST_MAP``) since nothing outside this
machine may be reached.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import yaml
from procs import Service, free_port, start, wait_port

HERE = Path(__file__).resolve().parent
VENV = HERE / ".litellm-venv"
VERSION = "1.102.4"
REQUIREMENT = f"litellm[proxy]=={VERSION}"


def ensure_installed(log: Path | None = None) -> Path:
    """The ``litellm`` command of the bench virtualenv, installing it if needed."""
    command = VENV / "bin" / "litellm"
    marker = VENV / f".installed-{VERSION}"
    if marker.exists() and command.exists():
        return command
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with (HERE / ".litellm-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and command.exists():
            return command
        began = time.monotonic()
        print(f"# installing {REQUIREMENT} into {VENV} (first use only)", flush=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True)
        out = log.open("wb") if log else subprocess.DEVNULL
        try:
            subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "-q",
                            "--disable-pip-version-check", REQUIREMENT],
                           check=True, stdout=out, stderr=subprocess.STDOUT)
        except subprocess.CalledProcessError:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise SystemExit(f"installing {REQUIREMENT} failed:\n{tail}") from None
        marker.touch()
        print(f"# installed in {time.monotonic() - began:.0f} s", flush=True)
    return command


def start_litellm(tmp: Path, models: dict[str, str]) -> tuple[Service, str, str]:
    """LiteLLM's proxy serving ``models`` (name → OpenAI base URL); returns it, its URL
    and its master key once it answers."""
    command = ensure_installed(tmp / "litellm-install.log")
    key = "sk-bench-" + secrets.token_urlsafe(32)
    config = {
        "model_list": [{"model_name": name, "litellm_params": {
            "model": f"openai/{name}", "api_base": base + "/v1", "api_key": "unused"}}
            for name, base in models.items()],
        "general_settings": {"master_key": key},
        "litellm_settings": {"telemetry": False, "set_verbose": False},
    }
    path = tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "LITELLM_TELEMETRY": "False", "NO_DOCS": "True", "DISABLE_ADMIN_UI": "True"}
    service = start("litellm", [str(command), "--config", str(path), "--host", "127.0.0.1",
                                "--port", str(port), "--num_workers", "1",
                                "--telemetry", "False"],
                    tmp / "litellm.log", env=env, cwd=tmp)
    wait_port(service, port, 180)
    return service, f"http://127.0.0.1:{port}", key
