"""Routing policies on a shared-prefix chat workload: TTFT and throughput per policy.

One gateway serves the same 4-replica simulator model once per policy (one
model entry per policy, all alike but for ``routing``). The simulator has a
real prefix cache and a prefill cost per uncached token, so a policy that
sends a conversation back to the instance holding its prefix answers sooner.

Workload: ``--conversations`` chats in groups of ``--group``; each group
shares a long system prompt, each chat adds ``--turns`` user turns (with the
assistant's answers in between), and all chats run at once, each turn after
the previous answer. TTFT is measured on the stream (first content chunk).

Arms: ``round_robin``, ``least_outstanding``, ``power_of_two``,
``prefix_aware``, ``session`` (``X-Session-Id`` = the chat), and ``oracle``:
each chat sent straight to one engine, chosen as chat id modulo the replica
count, bypassing the gateway (every turn hits its own cache, load is even by
construction; it pays no gateway overhead either).

    .venv/bin/python bench/routing.py                   # full run (~2 minutes)
    .venv/bin/python bench/routing.py --smoke           # seconds, for tests
    .venv/bin/python bench/routing.py --plot ttft.png   # needs matplotlib
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
from benchlib import launch_gateway

POLICIES = ["round_robin", "least_outstanding", "power_of_two", "prefix_aware", "session"]
ARMS = [*POLICIES, "oracle"]
REPLICAS = 4


@dataclass
class Workload:
    conversations: int
    group: int
    system_words: int
    turn_words: int
    turns: int
    max_tokens: int
    prefill_ms: float
    decode_ms: float


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/check_health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_gateway(tmp: Path, work: Workload) -> tuple[subprocess.Popen[bytes], str]:
    args = {"prefill_ms_per_token": work.prefill_ms, "decode_ms_per_token": work.decode_ms,
            "max_num_seqs": 64}
    models = [{"name": arm, "engine": "simulator", "model": arm, "replicas": REPLICAS,
               "routing": arm if arm in POLICIES else "least_outstanding", "args": args,
               "idle_timeout": 0} for arm in ARMS]
    return launch_gateway(tmp, models, _up)


def words(tag: str, n: int) -> str:
    return " ".join(f"{tag}{k % 97}" for k in range(n))


async def stream_turn(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                      headers: dict[str, str]) -> tuple[float, str, int, int]:
    """(TTFT in seconds, the answer's text, prompt tokens, cached prompt tokens) of one
    streamed chat request."""
    began = time.perf_counter()
    ttft = None
    text: list[str] = []
    usage: dict[str, Any] = {}
    async with session.post(url + "/v1/chat/completions", data=orjson.dumps(body),
                            headers={"Content-Type": "application/json", **headers}) as r:
        if r.status != 200:
            raise RuntimeError(f"{r.status}: {await r.text()}")
        async for line in r.content:
            if not line.startswith(b"data: {"):
                continue
            event = orjson.loads(line[6:])
            usage = event.get("usage") or usage
            choices = event.get("choices") or [{}]
            piece = (choices[0].get("delta") or {}).get("content")
            if piece:
                ttft = ttft if ttft is not None else time.perf_counter() - began
                text.append(piece)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return ((ttft if ttft is not None else time.perf_counter() - began), "".join(text),
            usage.get("prompt_tokens", 0), cached)


async def run_arm(arm: str, gateway: str, engines: list[str], work: Workload) -> dict[str, float]:
    ttfts: list[float] = []
    tokens = [0, 0]  # prompt, of which cached
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def chat(cid: int) -> None:
            group = cid // work.group
            messages = [{"role": "system", "content": words(f"g{group}s", work.system_words)}]
            url = engines[cid % len(engines)] if arm == "oracle" else gateway
            headers = {"X-Session-Id": f"chat-{cid}"} if arm == "session" else {}
            for turn in range(work.turns):
                messages.append({"role": "user", "content": words(f"c{cid}t{turn}w",
                                                                    work.turn_words)})
                body = {"model": arm, "messages": messages, "max_tokens": work.max_tokens,
                        "stream": True, "stream_options": {"include_usage": True}}
                ttft, answer, prompt, cached = await stream_turn(session, url, body, headers)
                ttfts.append(ttft)
                tokens[0] += prompt
                tokens[1] += cached
                messages.append({"role": "assistant", "content": answer})

        began = time.perf_counter()
        await asyncio.gather(*(chat(c) for c in range(work.conversations)))
        wall = time.perf_counter() - began
    ordered = sorted(ttfts)
    return {"mean": statistics.fmean(ttfts) * 1e3,
            "p50": ordered[len(ordered) // 2] * 1e3,
            "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
            "rps": len(ttfts) / wall, "cached": 100 * tokens[1] / max(1, tokens[0])}


def engine_urls(gateway: str, model: str) -> list[str]:
    info = httpx.get(f"{gateway}/api/models/{model}/info", timeout=10).json()["model"]
    return [i["address"] for i in info["instances"]]


def plot(results: dict[str, dict[str, float]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("# matplotlib is not installed: no plot written")
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    arms = list(results)
    ax.bar([a.replace("_", "\n") for a in arms], [results[a]["mean"] for a in arms],
           label="mean")
    ax.scatter([a.replace("_", "\n") for a in arms], [results[a]["p99"] for a in arms],
               color="black", marker="_", s=400, label="p99")
    ax.set_ylabel("TTFT (ms)")
    ax.set_title("TTFT per routing policy (shared-prefix chat, 4 replicas)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"# plot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny workload, for tests")
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--group", type=int, default=5, help="chats sharing a system prompt")
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--system-words", type=int, default=600)
    parser.add_argument("--turn-words", type=int, default=60)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--prefill-ms", type=float, default=1.0, help="per uncached token")
    parser.add_argument("--decode-ms", type=float, default=1.0, help="per output token")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of TTFT per arm")
    args = parser.parse_args()
    if args.smoke:
        args.conversations, args.group, args.turns = 4, 2, 2
        args.system_words, args.turn_words, args.max_tokens = 40, 10, 2
        args.prefill_ms, args.decode_ms = 0.1, 0.0
    work = Workload(args.conversations, args.group, args.system_words, args.turn_words,
                    args.turns, args.max_tokens, args.prefill_ms, args.decode_ms)

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, gateway = start_gateway(Path(tmp), work)
        try:
            for arm in ARMS:  # start the arm's model first: its start is not measured
                httpx.post(gateway + "/v1/chat/completions", timeout=60, json={
                    "model": arm, "messages": [{"role": "user", "content": "warm"}],
                    "max_tokens": 1}).raise_for_status()
                engines = engine_urls(gateway, arm)
                results[arm] = asyncio.run(run_arm(arm, gateway, engines, work))
        finally:
            proc.terminate()
            proc.wait(20)

    print(f"# routing — {time.strftime('%Y-%m-%d %H:%M')} — {platform.node()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"# {work.conversations} chats × {work.turns} turns, groups of {work.group} sharing a "
          f"{work.system_words}-word system prompt, {work.turn_words}-word turns, "
          f"{work.max_tokens} tokens out; {REPLICAS} replicas, prefill {work.prefill_ms:g} "
          f"ms/token, decode {work.decode_ms:g} ms/token")
    print(f"{'arm':<20}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'cached %':>10}")
    for arm, r in results.items():
        print(f"{arm:<20}{r['mean']:>10.1f}{r['p50']:>10.1f}{r['p99']:>10.1f}{r['rps']:>10.2f}"
              f"{r['cached']:>10.1f}")
    rr, pa, oracle = (results[a]["mean"] for a in ("round_robin", "prefix_aware", "oracle"))
    print(f"prefix_aware vs round_robin mean TTFT: {rr / pa:.2f}x lower; "
          f"vs oracle: {(pa / oracle - 1) * 100:+.1f} %")
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
