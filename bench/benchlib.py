"""What the benchmark scripts share: a gateway process started on a free port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_gateway(tmp: Path, models: list[dict[str, Any]], ready: Callable[[str], bool],
                   timeout: float = 60, **extra: Any) -> tuple[subprocess.Popen[bytes], str]:
    """``modelfleet serve`` with ``models``, quiet; returns once ``ready(url)`` holds.

    ``extra`` adds sections to its configuration (``auth={...}``, for example).
    """
    port = free_port()
    config = {"data_dir": str(tmp / "data"), "server": {"port": port}, "log_level": "warning",
              "models": models, **extra}
    (tmp / "bench.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "modelfleet", "serve", "--config",
                             str(tmp / "bench.yaml")], stdout=subprocess.DEVNULL,
                            stderr=(tmp / "gateway.log").open("wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(url):
            return proc, url
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("gateway did not start: " + (tmp / "gateway.log").read_text())
