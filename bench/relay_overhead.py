"""What the gateway adds: latency (p50/p99) and max requests/s, against direct.

Both arms hit the same trivially fast upstream (the simulator engine with no
delays) in one run, interleaved in rounds so drift on the machine hits both:

    direct   client → simulator
    gateway  client → modelfleet (raw-ASGI relay) → simulator

Latency is measured one request at a time (concurrency 1) on keep-alive
connections; max requests/s with a closed loop of ``--concurrency`` clients
in a separate load process. Prints a table and the gateway/direct ratios.

    .venv/bin/python bench/relay_overhead.py            # full run (~1 minute)
    .venv/bin/python bench/relay_overhead.py --smoke    # a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
from benchlib import launch_gateway

BODY = (b'{"model":"sim","messages":[{"role":"user","content":"hello there"}],'
        b'"max_tokens":4}')
PATH = "/v1/chat/completions"


def _sim_ready(url: str) -> bool:
    try:
        return bool(httpx.get(url + "/api/models/sim/info", timeout=1).json()["model"]
                    ["status"] == "ready")
    except (httpx.HTTPError, KeyError, ValueError):
        return False


def start_gateway(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    return launch_gateway(tmp, [{"name": "sim", "engine": "simulator", "model": "sim",
                                 "auto_start": True, "idle_timeout": 0}], _sim_ready)


async def latencies(url: str, n: int) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as s:
        for _ in range(20):  # warm the connection and both processes
            async with s.post(url + PATH, data=BODY) as r:
                await r.read()
        for _ in range(n):
            t = time.perf_counter()
            async with s.post(url + PATH, data=BODY) as r:
                await r.read()
                assert r.status == 200, r.status
            out.append(time.perf_counter() - t)
    return out


async def _closed_loop(url: str, seconds: float, concurrency: int) -> int:
    done = 0
    stop_at = time.perf_counter() + seconds
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                async with s.post(url + PATH, data=BODY) as r:
                    await r.read()
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def _load_process(url: str, seconds: float, concurrency: int, out: mp.Queue) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.put(asyncio.run(_closed_loop(url, seconds, concurrency)))


def throughput(url: str, seconds: float, concurrency: int) -> float:
    queue: mp.Queue = mp.Queue()
    proc = mp.Process(target=_load_process, args=(url, seconds, concurrency, queue))
    proc.start()
    count = queue.get(timeout=seconds + 60)
    proc.join()
    return count / seconds


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for tests")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000, help="per arm per round")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput run")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.requests, args.seconds = 1, 100, 0.5

    with tempfile.TemporaryDirectory() as tmp:
        proc, gateway = start_gateway(Path(tmp))
        try:
            direct = httpx.get(gateway + "/api/models/sim/info").json()["model"]["endpoint"]
            lat: dict[str, list[float]] = {"direct": [], "gateway": []}
            rps: dict[str, list[float]] = {"direct": [], "gateway": []}
            for _ in range(args.rounds):
                for arm, url in (("direct", direct), ("gateway", gateway)):
                    lat[arm] += asyncio.run(latencies(url, args.requests))
                    rps[arm].append(throughput(url, args.seconds, args.concurrency))
        finally:
            proc.terminate()
            proc.wait(20)

    print(f"# relay overhead — {time.strftime('%Y-%m-%d %H:%M')} — {platform.node()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"# latency: {len(lat['direct'])} sequential requests per arm; "
          f"throughput: {args.concurrency} clients, {args.rounds}×{args.seconds:g}s per arm")
    print(f"{'arm':<10}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'max req/s':>12}")
    for arm in ("direct", "gateway"):
        print(f"{arm:<10}{pct(lat[arm], .5) * 1e3:>10.3f}{pct(lat[arm], .99) * 1e3:>10.3f}"
              f"{statistics.fmean(lat[arm]) * 1e3:>10.3f}{max(rps[arm]):>12.0f}")
    added50 = (pct(lat["gateway"], .5) - pct(lat["direct"], .5)) * 1e3
    added99 = (pct(lat["gateway"], .99) - pct(lat["direct"], .99)) * 1e3
    print(f"added latency: p50 {added50:.3f} ms, p99 {added99:.3f} ms")
    print(f"gateway/direct max req/s: {max(rps['gateway']) / max(rps['direct']):.2f}")


if __name__ == "__main__":
    main()
