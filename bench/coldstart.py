"""Cold start: many concurrent requests for a stopped model start one engine.

The engine's own start is timed first: the simulator launched by hand, from
spawn to its first ``/health`` 200 (the best of a few). Then ``requests``
concurrent requests go to a gateway whose simulator model is stopped; the
figures are the engines spawned (``start_count``, and the engine processes
under the gateway: must be 1) and how much longer than the engine's own start
the first and the last answer took. Each round stops the model again first.
"""

from __future__ import annotations

import asyncio
import http.client
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil
from benchlib import launch_gateway
from procs import free_port

BODY = b'{"model":"cold","messages":[{"role":"user","content":"hi"}],"max_tokens":2}'


def engine_start_s(tries: int = 3) -> float:
    """The simulator's own start: spawn to its first /health 200, best of ``tries``."""
    best = float("inf")
    for _ in range(tries):
        port = free_port()
        began = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "modelfleet.engines.simulator",
                                 "--port", str(port), "--served-model-name", "cold"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not _healthy(port):
                if proc.poll() is not None:
                    raise RuntimeError("the simulator exited while starting")
                time.sleep(0.005)
            best = min(best, time.perf_counter() - began)
        finally:
            proc.terminate()
            proc.wait(10)
    return best


def _healthy(port: int) -> bool:
    """GET /health with the standard library: polling with httpx would cost the starting
    engine CPU (a client and a TLS context per call) and slow what is being timed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


async def _burst(url: str, requests: int) -> list[float]:
    """``requests`` concurrent chat requests; seconds until each answered 200."""
    connector = aiohttp.TCPConnector(limit=requests)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.perf_counter()

        async def one() -> float:
            async with session.post(url + "/v1/chat/completions", data=BODY,
                                    headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"cold request answered {resp.status}")
            return time.perf_counter() - began

        return sorted(await asyncio.gather(*(one() for _ in range(requests))))


def _engines(gateway: subprocess.Popen[bytes]) -> int:
    return sum(1 for child in psutil.Process(gateway.pid).children(recursive=True)
               if "modelfleet.engines.simulator" in " ".join(child.cmdline()))


def cold_start(tmp: Path, requests: int, rounds: int) -> dict[str, Any]:
    """Spawns per burst and the time added over the engine's own start (median of rounds)."""
    own = engine_start_s()
    tmp.mkdir(parents=True, exist_ok=True)
    proc, url = launch_gateway(tmp, [{"name": "cold", "engine": "simulator", "model": "cold",
                                      "auto_start": False, "idle_timeout": 0}], _ready)
    first: list[float] = []
    last: list[float] = []
    spawns: list[int] = []
    try:
        for _ in range(rounds):
            httpx.post(url + "/api/models/cold/stop", params={"wait": "true"}, timeout=60)
            _wait_status(url, "stopped")
            before = httpx.get(url + "/api/models/cold/info", timeout=10).json()["model"]
            times = asyncio.run(_burst(url, requests))
            after = httpx.get(url + "/api/models/cold/info", timeout=10).json()["model"]
            spawns.append(max(after["start_count"] - before["start_count"], _engines(proc)))
            first.append(times[0] - own)
            last.append(times[-1] - own)
    finally:
        proc.terminate()
        proc.wait(20)
    return {"requests": requests, "rounds": rounds, "engine_start_ms": own * 1e3,
            "spawns": spawns, "added_first_ms": statistics.median(first) * 1e3,
            "added_last_ms": statistics.median(last) * 1e3}


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/check_health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_status(url: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = httpx.get(url + "/api/models/cold/info", timeout=10).json()["model"]
        if info["status"] == status:
            return
        time.sleep(0.05)
    raise RuntimeError(f"model cold did not become {status}")
