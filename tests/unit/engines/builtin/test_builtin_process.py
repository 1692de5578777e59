"""Process hygiene of the engine: it dies with its parent, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

PARENT = """
import os, subprocess, sys, json, time
env = dict(os.environ, MODELFLEET_PARENT_PID=str(os.getpid()))
log = open(sys.argv[2], "wb")
child = subprocess.Popen(json.loads(sys.argv[1]), env=env, stdout=log, stderr=subprocess.STDOUT)
print(child.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_engine_exits_when_its_parent_is_killed(
    tmp_path: Path, tiny_llama_dir: Path, engine_tools: Any
) -> None:
    port = engine_tools.free_port()
    command = engine_tools.engine_command(tiny_llama_dir, port)
    log = tmp_path / "engine.log"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, json.dumps(command), str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        engine_tools.wait_healthy(f"http://127.0.0.1:{port}", None)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child), log.read_text()
        assert "parent process" in log.read_text()
    finally:
        if parent.poll() is None:
            parent.kill()
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_sigterm_stops_gracefully_even_mid_stream(launch_engine: Any, tiny_llama_dir: Path) -> None:
    engine = launch_engine(tiny_llama_dir)
    with engine:
        started = threading.Event()
        outcome: list[Any] = []

        def stream() -> None:
            body = {
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 3500,
                "stream": True,
                "ignore_eos": True,
                "temperature": 1.0,
            }
            try:
                with httpx.stream(
                    "POST", f"{engine.url}/v1/chat/completions", json=body, timeout=30
                ) as response:
                    for _ in response.iter_lines():
                        started.set()
                outcome.append("ended")
            except httpx.HTTPError as exc:
                outcome.append(exc)

        reader = threading.Thread(target=stream, daemon=True)
        reader.start()
        assert started.wait(10)
        t0 = time.monotonic()
        engine.proc.send_signal(signal.SIGTERM)
        code = engine.proc.wait(15)
        elapsed = time.monotonic() - t0
        reader.join(5)
    assert code == 0
    # uvicorn gives in-flight requests 2 s, then cancels them (and so the generation).
    assert elapsed < 8, elapsed
    assert "stopped" in engine.log()
    assert outcome, "the streaming client never returned"


def test_watchdog_parent_checks() -> None:
    from modelfleet.engines.builtin.server import ParentWatchdog

    direct = ParentWatchdog(os.getppid())
    assert direct.direct and direct.parent_alive()
    # Not our parent but alive (a wrapper between us and the gateway): by existence.
    indirect = ParentWatchdog(os.getpid())
    assert not indirect.direct and indirect.parent_alive()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not ParentWatchdog(dead.pid).parent_alive()
