"""The measurements of ``bench/compare.py``, each over every arm of a running ``Stack``.

Arms are interleaved: each round runs every arm once, the order rotating from
round to round, so drift on the machine reaches all of them alike.

Layouts: ``pinned`` puts each gateway on core 0 and the load generator and the
upstreams on core 1 (so a gateway's figure is what one core of it does);
``box`` lets every process run anywhere.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from arms import CHAT_PATH, Arm, Stack
from procs import ALL_CPUS, pin, taskset
from wrk import WrkResult, lua_script, run_wrk

HERE = Path(__file__).resolve().parent
GATEWAY_CPUS = frozenset({0})
LOAD_CPUS = frozenset({1}) if len(ALL_CPUS) > 1 else ALL_CPUS


@dataclass
class ArmResult:
    rss_idle_mb: float = 0.0
    rss_after_mb: float = 0.0
    served: int = 0  # requests this arm answered during the run
    rps: dict[str, float] = field(default_factory=dict)  # by layout
    latency: dict[float, dict[str, Any]] = field(default_factory=dict)  # by rate
    sse: dict[str, Any] = field(default_factory=dict)


def set_layout(stack: Stack, layout: str) -> frozenset[int]:
    """Pin the processes for ``layout``; returns the cores the load generator gets."""
    pinned = layout == "pinned"
    for service in stack.gateways:
        pin(service.pids(), GATEWAY_CPUS if pinned else ALL_CPUS)
    for service in stack.load_side:
        pin(service.pids(), LOAD_CPUS if pinned else ALL_CPUS)
    return LOAD_CPUS if pinned else ALL_CPUS


def rotations(names: list[str], rounds: int) -> list[list[str]]:
    return [names[r % len(names):] + names[:r % len(names)] for r in range(rounds)]


def throughput(stack: Stack, results: dict[str, ArmResult], tmp: Path, layout: str,
               seconds: float, rounds: int, warm: float = 0) -> None:
    """Max requests/s of every arm with wrk (the best round), in ``layout``."""
    cpus = set_layout(stack, layout)
    threads, connections = (1, 32) if cpus != ALL_CPUS else (2, 64)
    for name, arm in stack.arms.items():
        script = lua_script(tmp / f"{name}.lua", arm.body(), arm.headers)
        if warm:
            _count(results[name], run_wrk(arm.url + CHAT_PATH, script, warm, connections,
                                          threads, cpus), name)
    for order in rotations(list(stack.arms), rounds):
        for name in order:
            arm = stack.arms[name]
            got = run_wrk(arm.url + CHAT_PATH, tmp / f"{name}.lua", seconds, connections,
                          threads, cpus)
            _count(results[name], got, name)
            best = results[name].rps.get(layout, 0.0)
            results[name].rps[layout] = max(best, got.rps)
            _check_alive(arm)


def top_up(stack: Stack, results: dict[str, ArmResult], tmp: Path, target: int,
           cap_s: float) -> None:
    """Send each gateway arm requests until it served ``target`` (at most ``cap_s`` s)."""
    cpus = set_layout(stack, "pinned")
    for name, arm in stack.arms.items():
        result = results[name]
        missing = target - result.served
        if arm.service is None or missing <= 0:
            continue
        rate = max(result.rps.values(), default=100.0)
        seconds = min(cap_s, max(2.0, missing / rate * 1.1))
        got = run_wrk(arm.url + CHAT_PATH, tmp / f"{name}.lua", seconds, 16, 1, cpus)
        if got.failed:
            raise RuntimeError(f"{name}: wrk saw {got.failed} failures topping up")
        result.served += got.requests


def latency(stack: Stack, results: dict[str, ArmResult], rates: list[float], seconds: float,
            rounds: int, headroom: float = 0.8) -> None:
    """Latency at fixed arrival rates (open loop), pinned layout.

    A rate above ``headroom`` × an arm's pinned max requests/s is not run for
    that arm: its queue would only grow, and the figure would be the length of
    the run, not a latency (recorded as ``saturated``).
    """
    cpus = set_layout(stack, "pinned")
    for rate in rates:
        pooled: dict[str, dict[str, Any]] = {}
        for order in rotations(list(stack.arms), rounds):
            for name in order:
                arm = stack.arms[name]
                max_rps = results[name].rps.get("pinned")
                if name != "direct" and max_rps is not None and rate > headroom * max_rps:
                    pooled[name] = {"saturated": True}
                    continue
                got = open_loop(arm, rate, seconds, False, cpus)
                results[name].served += got["requests"]
                _merge(pooled.setdefault(name, {}), got)
                _check_alive(arm)
        for name, got in pooled.items():
            results[name].latency[rate] = summarise(got)


def sse(stack: Stack, results: dict[str, ArmResult], rate: float, seconds: float,
        rounds: int, chunks: int) -> None:
    """Time to first token and chunks lost at ``rate`` streams/s (open loop), pinned."""
    cpus = set_layout(stack, "pinned")
    pooled: dict[str, dict[str, Any]] = {}
    for order in rotations(list(stack.arms), rounds):
        for name in order:
            arm = stack.arms[name]
            got = open_loop(arm, rate, seconds, True, cpus)
            results[name].served += got["requests"]
            _merge(pooled.setdefault(name, {}), got)
            _check_alive(arm)
    for name, got in pooled.items():
        summary = summarise(got, "ttft_us")
        summary["lost"] = got["requests"] * chunks - got["chunks"] if got["requests"] else 0
        results[name].sse = summary


def open_loop(arm: Arm, rate: float, seconds: float, stream: bool,
              cpus: frozenset[int]) -> dict[str, Any]:
    """``bench/openloop.py`` against ``arm`` on ``cpus``; its JSON result."""
    argv = [sys.executable, str(HERE / "openloop.py"),
            (arm.sse_url if stream else arm.url) + CHAT_PATH, "--rate", str(rate),
            "--seconds", str(seconds), "--body", arm.body(stream).decode()]
    for name, value in arm.headers.items():
        argv += ["--header", f"{name}: {value}"]
    if stream:
        argv.append("--stream")
    done = subprocess.run(taskset(cpus, argv), capture_output=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"open loop against {arm.name} failed:\n{done.stderr.decode()}")
    result: dict[str, Any] = orjson.loads(done.stdout)
    if result["errors"] or result["timeouts"] == result["requests"]:
        raise RuntimeError(f"{arm.name}: {result['errors']} of {result['requests']} requests "
                           f"failed at {rate:g}/s, e.g. {result['error_sample']}")
    return result


def summarise(got: dict[str, Any], key: str = "latency_us") -> dict[str, Any]:
    if got.get("saturated"):
        return {"saturated": True}
    values = sorted(got[key])
    if not values:
        raise RuntimeError("no request completed")
    return {"p50_ms": _pct(values, 0.50) / 1e3, "p99_ms": _pct(values, 0.99) / 1e3,
            "requests": got["requests"], "timeouts": got["timeouts"]}


def _pct(ordered: list[int], q: float) -> float:
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def _merge(into: dict[str, Any], got: dict[str, Any]) -> None:
    if into.get("saturated"):
        return
    for key in ("requests", "chunks", "errors", "timeouts"):
        into[key] = into.get(key, 0) + got[key]
    for key in ("latency_us", "ttft_us"):
        into.setdefault(key, []).extend(got[key])


def _count(result: ArmResult, got: WrkResult, name: str) -> None:
    if not got.ok:
        raise RuntimeError(f"{name}: wrk saw {got.failed} failures in {got.requests} requests")
    result.served += got.requests


def _check_alive(arm: Arm) -> None:
    if arm.service is not None:
        arm.service.check()
