"""Test support for fleets: a private Redis server, agents, and the metastore's view.

Every fleet test gets its own ``redis-server`` process on a free port (real Redis,
nothing shared with other tests), so pausing or killing it touches nothing else.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import yaml

from tests.helpers import stop_process, wait_until


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (.ci/run starts the machine's Redis; "
                        "the fleet tests run their own from the same package)", pytrace=False)
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ping, timeout=10)
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def ping(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class AgentProc:
    """A ``modelfleet agent`` subprocess."""

    proc: subprocess.Popen[bytes]
    node_id: str
    host: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def engine_pids(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc)


def start_agent(tmp: Path, redis_url: str, node_id: str, host: str = "127.0.0.1", *,
                prefix: str = "modelfleet:", ttl_s: float = 3.0,
                models: list[dict[str, Any]] | None = None) -> AgentProc:
    """Start an agent and wait for its node record."""
    home = tmp / node_id
    home.mkdir(parents=True, exist_ok=True)
    config = {"data_dir": str(home / "data"), "redis_prefix": prefix,
              "fleet": {"ttl_s": ttl_s}, "models": models or []}
    config_path = home / "agent.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = home / "agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelfleet", "agent", "--redis-url", redis_url,
         "--advertise-host", host, "--node-id", node_id, "--config", str(config_path)],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=home)
    agent = AgentProc(proc, node_id, host, log_path)
    client = redis.Redis.from_url(redis_url, socket_timeout=2)

    def registered() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited early:\n{agent.log()}")
        return bool(client.exists(f"{prefix}node:{node_id}"))

    wait_until(registered, timeout=30)
    return agent


def fleet_config(redis: RedisServer, prefix: str, database_url: str | None = None,
                 ttl_s: float = 3.0, **extra: Any) -> dict[str, Any]:
    """The extra settings that put a gateway in a fleet."""
    out: dict[str, Any] = {"redis_url": redis.url, "redis_prefix": prefix,
                           "fleet": {"ttl_s": ttl_s, **extra.pop("fleet", {})}, **extra}
    if database_url:
        out["database_url"] = database_url
    return out
