"""Test support: start a real gateway process on a free port and wait for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
TINY_CHAT = REPO / "src" / "modelfleet" / "assets" / "tiny-chat"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200 now; False while nothing listens there."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Gateway:
    """A `modelfleet serve` subprocess."""

    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log_path: Path

    def client(self, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=kw.pop("api_key", "unused"),
                             max_retries=0, timeout=kw.pop("timeout", 60), **kw)

    def async_client(self, **kw: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1",
                                  api_key=kw.pop("api_key", "unused"), max_retries=0,
                                  timeout=kw.pop("timeout", 60), **kw)

    def get(self, path: str) -> Any:
        return httpx.get(self.url + path, timeout=30).json()

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=kw.pop("timeout", 120), **kw)

    def info(self, model: str) -> dict[str, Any]:
        return self.get(f"/api/models/{model}/info")["model"]

    def engine_pids(self) -> list[int]:
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [c.pid for c in children if c.is_running()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; waits for the exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_gateway(tmp: Path, models: list[dict[str, Any]], **extra: Any) -> Gateway:
    port = free_port()
    data_dir = tmp / "data"
    server = {"port": port, **extra.pop("server", {})}
    config = {"data_dir": str(data_dir), "server": server, "models": models, **extra}
    config_path = tmp / "modelfleet.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp / "gateway.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelfleet", "serve", "--config", str(config_path)],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp,
    )
    gw = Gateway(proc, f"http://127.0.0.1:{port}", data_dir, log_path)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{gw.log()}")
        try:
            return httpx.get(gw.url + "/check_health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=60)
    return gw


def simulator_model(name: str = "sim", **kw: Any) -> dict[str, Any]:
    args = kw.pop("args", {})
    return {"name": name, "engine": "simulator", "model": name, "args": args, **kw}


def tiny_chat_model(name: str = "tiny-chat", **kw: Any) -> dict[str, Any]:
    return {"name": name, "engine": "builtin", "model": str(TINY_CHAT), "task": "chat", **kw}
