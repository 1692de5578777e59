"""Routing policies on a shared-prefix chat workload: TTFT and throughput per policy.

One gateway serves five models that differ only in ``routing``, each with 4
simulator replicas. The simulator has an LRU prefix cache and charges a
prefill cost per uncached prompt token, so a request that reaches the
instance holding its conversation's earlier turns answers sooner.

Workload (seeded, the same for every arm): ``--conversations`` chats start at
random moments over ``--arrive-s`` seconds; each belongs to one of ``--apps``
apps whose system prompt it shares, and runs its turns one after the other:
each turn sends the whole conversation so far plus a new user message, streams
the answer to its end, and the user thinks a while before the next. Sizes are
drawn per app, chat and turn from the ranges given (words; the simulator counts
a word as a token). TTFT is the time to the first content chunk; the engines'
own TTFT (their histogram: no relay, no client) is reported beside it.

Arms: ``round_robin``, ``least_outstanding``, ``power_of_two``,
``prefix_aware``, ``session`` (``X-Session-Id`` = the chat), and ``oracle``:
four more simulators, each behind the gateway as its own ``external`` model, so
the oracle pays the same relay; the bench replays each one's prefix cache (the
simulator's own LRU class, block hashes and capacity, fed with what it sent
there) and sends every request to the instance with the longest cached prefix
among those under prefix_aware's load bound (the least loaded on a tie).

All arms run at the same time, each on its own engines, so load from
elsewhere on the machine falls on every arm alike. The think time keeps the
streams few enough for the two cores of a small machine to relay for six arms.

    .venv/bin/python bench/routing.py                   # full run (~3.5 minutes)
    .venv/bin/python bench/routing.py --smoke           # seconds, for tests
    .venv/bin/python bench/routing.py --plot docs/img/routing.png   # needs matplotlib
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import httpx
import orjson
from benchlib import free_port, launch_gateway

from modelfleet.engines.sim.cache import PrefixCache
from modelfleet.engines.sim.prompt import block_hashes, parse_prompt
from modelfleet.fleet import routing

POLICIES = ["round_robin", "least_outstanding", "power_of_two", "prefix_aware", "session"]
ARMS = [*POLICIES, "oracle"]
REPLICAS = 4
BLOCK_SIZE = 16  # the simulator's default --block-size


@dataclass
class Workload:
    conversations: int
    arrive_s: float
    think_s: tuple[float, float]
    apps: int
    system_words: tuple[int, int]
    turns: tuple[int, int]
    user_words: tuple[int, int]
    answer_tokens: tuple[int, int]
    prefill_ms: float
    decode_ms: float
    max_num_seqs: int
    cache_blocks: int
    seed: int

    def engine_args(self) -> dict[str, Any]:
        return {"prefill_ms_per_token": self.prefill_ms, "decode_ms_per_token": self.decode_ms,
                "max_num_seqs": self.max_num_seqs, "prefix_cache_blocks": self.cache_blocks,
                "block_size": BLOCK_SIZE}


@dataclass
class Chat:
    cid: int
    start: float  # seconds after the run began
    system: str
    turns: list[tuple[float, str, int]]  # (think time before it, user message, max_tokens)


def words(tag: str, n: int) -> str:
    return " ".join(f"{tag}{k}" for k in range(n))


def script(work: Workload) -> list[Chat]:
    """The chats; drawn once, so every arm runs the very same ones."""
    rng = random.Random(work.seed)
    systems = [words(f"app{a}s", rng.randint(*work.system_words)) for a in range(work.apps)]
    chats = []
    for cid in range(work.conversations):
        start = rng.uniform(0, work.arrive_s)
        system = systems[rng.randrange(work.apps)]
        turns = [(rng.uniform(*work.think_s) if t else 0.0,
                  words(f"c{cid}t{t}w", rng.randint(*work.user_words)),
                  rng.randint(*work.answer_tokens))
                 for t in range(rng.randint(*work.turns))]
        chats.append(Chat(cid, start, system, turns))
    return chats


# -- the oracle ----------------------------------------------------------------------------


class Replica(PrefixCache):
    """A copy of one simulator's prefix cache, fed with what was sent to it."""

    def peek(self, hashes: list[bytes], num_tokens: int) -> int:
        """Like ``match`` (the same leading-block rule), without touching the LRU order."""
        usable = (num_tokens - 1) // self.block_size
        hit = 0
        for digest in hashes[:usable]:
            if digest not in self._blocks:
                break
            hit += 1
        return hit


@dataclass(eq=False)
class Load:
    outstanding: int = 0


class Oracle:
    """Knows every oracle instance's cache; see the module docstring."""

    def __init__(self, count: int, capacity: int) -> None:
        self.caches = [Replica(capacity, BLOCK_SIZE) for _ in range(count)]
        self.loads = [Load() for _ in range(count)]
        self.sent = [0] * count

    def pick(self, body: dict[str, Any]) -> tuple[int, list[bytes]]:
        """(instance, the prompt's block hashes); the request is counted in its load."""
        tokens = parse_prompt(body).tokens
        hashes = block_hashes(tokens, BLOCK_SIZE)
        bound = routing.load_bound(cast(Sequence[routing.Routable], self.loads))
        best = min((k for k, load in enumerate(self.loads) if load.outstanding < bound),
                   key=lambda k: (-self.caches[k].peek(hashes, len(tokens)),
                                  self.loads[k].outstanding))
        self.caches[best].match(hashes, len(tokens))  # the engine touches its hit at once
        self.loads[best].outstanding += 1
        self.sent[best] += 1
        return best, hashes


# -- running the arms ----------------------------------------------------------------------


@dataclass
class Results:
    ttfts: list[float] = field(default_factory=list)
    by_turn: dict[int, list[float]] = field(default_factory=dict)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    wall: float = 0.0
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.ttfts)
        return {"mean": statistics.fmean(ordered) * 1e3, "p50": ordered[len(ordered) // 2] * 1e3,
                "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
                "rps": len(ordered) / self.wall,
                "cached": 100 * self.cached_tokens / max(1, self.prompt_tokens)}


async def stream_turn(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                      headers: dict[str, str], on_first: Callable[[], None] = lambda: None
                      ) -> tuple[float, str, int, int]:
    """(TTFT in seconds, the answer's text, prompt tokens, cached prompt tokens) of one
    streamed chat request; ``on_first`` runs at the first content chunk."""
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
                if ttft is None:
                    ttft = time.perf_counter() - began
                    on_first()
                text.append(piece)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return ((ttft if ttft is not None else time.perf_counter() - began), "".join(text),
            usage.get("prompt_tokens", 0), cached)


async def oracle_turn(session: aiohttp.ClientSession, gateway: str, oracle: Oracle,
                      body: dict[str, Any]) -> tuple[float, str, int, int]:
    """One turn sent to the oracle's pick; its replica learns the prompt once the engine
    has prefilled it (at the first chunk), as the engine's cache does."""
    k, hashes = oracle.pick(body)
    try:
        return await stream_turn(session, gateway, {**body, "model": f"oracle-{k}"}, {},
                                 lambda: oracle.caches[k].insert(hashes))
    finally:
        oracle.loads[k].outstanding -= 1


async def run_arm(arm: str, chats: list[Chat], gateway: str, oracle: Oracle) -> Results:
    """Every chat, each from its start time, each turn after the previous answer and a
    think time."""
    out = Results()
    # Idle connections are dropped before uvicorn's 5 s keep-alive ends, so a request
    # never goes out on one the gateway is closing.
    conn = aiohttp.TCPConnector(limit=0, keepalive_timeout=2)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def chat(c: Chat) -> None:
            await asyncio.sleep(c.start)
            messages: list[dict[str, str]] = [{"role": "system", "content": c.system}]
            headers = {"X-Session-Id": f"chat-{c.cid}"} if arm == "session" else {}
            for turn, (think, user, max_tokens) in enumerate(c.turns):
                await asyncio.sleep(think)
                messages.append({"role": "user", "content": user})
                body = {"model": arm, "messages": messages, "max_tokens": max_tokens,
                        "stream": True, "stream_options": {"include_usage": True}}
                if arm == "oracle":
                    ttft, answer, prompt, cached = await oracle_turn(session, gateway, oracle, body)
                else:
                    if arm == "prefix_aware":
                        out.bodies.append({"messages": list(messages)})
                    ttft, answer, prompt, cached = await stream_turn(
                        session, gateway, body, headers)
                out.ttfts.append(ttft)
                out.by_turn.setdefault(turn, []).append(ttft)
                out.prompt_tokens += prompt
                out.cached_tokens += cached
                messages.append({"role": "assistant", "content": answer})

        began = time.perf_counter()
        await asyncio.gather(*(chat(c) for c in chats))
        out.wall = time.perf_counter() - began
    return out


async def run_all(chats: list[Chat], gateway: str, oracle: Oracle) -> dict[str, Results]:
    """Every arm at the same time; see the module docstring."""
    done = await asyncio.gather(*(run_arm(arm, chats, gateway, oracle) for arm in ARMS))
    return dict(zip(ARMS, done, strict=True))


# -- processes -----------------------------------------------------------------------------


def _up(url: str, path: str = "/check_health") -> bool:
    try:
        return httpx.get(url + path, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_oracle_engines(work: Workload, tmp: Path) -> tuple[list[subprocess.Popen[bytes]],
                                                             list[str]]:
    """The oracle's four simulators, launched here with the arms' engine flags."""
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in work.engine_args().items()]
    env = {**os.environ, "MODELFLEET_PARENT_PID": str(os.getpid())}
    procs, urls = [], []
    for k in range(REPLICAS):
        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "modelfleet.engines.simulator", "--port", str(port),
             "--served-model-name", f"oracle-{k}", *flags], env=env,
            stdout=subprocess.DEVNULL, stderr=(tmp / f"oracle-{k}.log").open("wb")))
        urls.append(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while not all(_up(u, "/health") for u in urls):
        if time.monotonic() > deadline:
            raise SystemExit("oracle simulators did not start")
        time.sleep(0.2)
    return procs, urls


def start_gateway(tmp: Path, work: Workload, oracle_urls: list[str]
                  ) -> tuple[subprocess.Popen[bytes], str]:
    models = [{"name": arm, "engine": "simulator", "model": arm, "replicas": REPLICAS,
               "routing": arm, "args": work.engine_args(), "idle_timeout": 0}
              for arm in POLICIES]
    models += [{"name": f"oracle-{k}", "engine": "external", "model": url, "idle_timeout": 0}
               for k, url in enumerate(oracle_urls)]
    return launch_gateway(tmp, models, _up)


def served(gateway: str, model: str) -> list[int]:
    info = httpx.get(f"{gateway}/api/models/{model}/info", timeout=10).json()["model"]
    return sorted(i["served"] for i in info["instances"])


def addresses(gateway: str, model: str) -> list[str]:
    info = httpx.get(f"{gateway}/api/models/{model}/info", timeout=10).json()["model"]
    return [i["address"] for i in info["instances"]]


def engine_ttft(urls: list[str]) -> tuple[float, int]:
    """The engines' own TTFT histogram (arrival there to first token): sum and count."""
    total, count = 0.0, 0
    for url in urls:
        for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
            if line.startswith("vllm:time_to_first_token_seconds_sum"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith("vllm:time_to_first_token_seconds_count"):
                count += int(float(line.rsplit(" ", 1)[1]))
    return total, count


# -- the cost of the hint --------------------------------------------------------------------


@dataclass(eq=False)
class FakeInstance:
    base_url: str
    outstanding: int = 0
    breaker: routing.Breaker = field(default_factory=routing.Breaker)


def hint_cost(bodies: list[dict[str, Any]]) -> tuple[float, float, float]:
    """µs per request of ``prefix_hashes`` and of prefix_aware's ``choose`` (4 instances)
    over this workload's prompts, best of five passes; and the mean blocks per prompt."""
    best_hash = best_choose = float("inf")
    hints: list[routing.RouteHint] = []
    for _ in range(5):
        began = time.perf_counter()
        hints = [routing.RouteHint(routing.prefix_hashes(b)) for b in bodies]
        best_hash = min(best_hash, time.perf_counter() - began)
        instances = [FakeInstance(f"http://127.0.0.1:{9000 + k}") for k in range(REPLICAS)]
        policy = routing.PrefixAware()
        began = time.perf_counter()
        for hint in hints:
            routing.choose(policy, instances, hint=hint)
        best_choose = min(best_choose, time.perf_counter() - began)
    n = max(1, len(bodies))
    blocks = sum(len(h.prefix_hashes) for h in hints) / n
    return best_hash / n * 1e6, best_choose / n * 1e6, blocks


# -- report ------------------------------------------------------------------------------------


def plot(results: dict[str, Results], summary: dict[str, dict[str, float]],
         engine_ms: dict[str, float], path: str, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("# matplotlib is not installed: no plot written")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    places = range(len(summary))
    left.bar([x - 0.2 for x in places], [s["mean"] for s in summary.values()], width=0.4,
             color="tab:blue", label="mean, at the client")
    left.bar([x + 0.2 for x in places], [engine_ms[a] for a in summary], width=0.4,
             color="tab:orange", label="mean, at the engines")
    left.scatter([x - 0.2 for x in places], [s["p99"] for s in summary.values()],
                 color="black", marker="_", s=300, label="p99, at the client")
    left.set_xticks(list(places), [a.replace("_", "\n") for a in summary])
    left.set_yscale("log")
    left.set_ylabel("TTFT (ms, log scale)")
    left.set_title("TTFT per arm")
    left.legend(fontsize="small")
    for arm, res in results.items():
        turns = sorted(res.by_turn)
        right.plot([t + 1 for t in turns],
                   [statistics.fmean(res.by_turn[t]) * 1e3 for t in turns], marker="o",
                   label=arm, linestyle="--" if arm == "oracle" else "-")
    right.set_xlabel("turn of the chat")
    right.set_ylabel("mean TTFT (ms)")
    right.set_title("TTFT as the conversation grows")
    right.legend(fontsize="small")
    fig.suptitle(textwrap.fill(title, 150), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"# plot written to {path}")


def parse(argv: list[str] | None = None) -> tuple[Workload, str | None]:
    """The workload the flags describe, and where to write the plot (if anywhere)."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="a tiny workload, for tests")
    p.add_argument("--conversations", type=int, default=48)
    p.add_argument("--arrive-s", type=float, default=60, help="chats start within this time")
    p.add_argument("--think-s", type=float, nargs=2, default=(4, 16), metavar=("LO", "HI"),
                   help="the user's pause between an answer and the next turn")
    p.add_argument("--apps", type=int, default=4, help="system prompts shared by the chats")
    p.add_argument("--system-words", type=int, nargs=2, default=(300, 600), metavar=("LO", "HI"))
    p.add_argument("--turns", type=int, nargs=2, default=(3, 10), metavar=("LO", "HI"))
    p.add_argument("--user-words", type=int, nargs=2, default=(20, 200), metavar=("LO", "HI"))
    p.add_argument("--answer-tokens", type=int, nargs=2, default=(50, 400), metavar=("LO", "HI"))
    p.add_argument("--prefill-ms", type=float, default=0.1, help="per uncached prompt token")
    p.add_argument("--decode-ms", type=float, default=12.0, help="per output token")
    p.add_argument("--max-num-seqs", type=int, default=16, help="requests running per engine")
    p.add_argument("--cache-blocks", type=int, default=16384,
                   help=f"prefix cache per engine, in blocks of {BLOCK_SIZE} tokens")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--plot", metavar="PATH", help="write a PNG of the results")
    args = p.parse_args(argv)
    if args.smoke:
        args.conversations, args.arrive_s, args.think_s, args.apps = 4, 0.0, (0.0, 0.0), 2
        args.system_words, args.turns, args.user_words = (40, 60), (2, 2), (10, 20)
        args.answer_tokens, args.prefill_ms, args.decode_ms = (2, 4), 0.01, 0.0
    return Workload(args.conversations, args.arrive_s, tuple(args.think_s), args.apps,
                    tuple(args.system_words),
                    tuple(args.turns), tuple(args.user_words), tuple(args.answer_tokens),
                    args.prefill_ms, args.decode_ms, args.max_num_seqs, args.cache_blocks,
                    args.seed), args.plot


def describe(work: Workload) -> str:
    def span(pair: tuple[float, float]) -> str:
        return f"{pair[0]:g}–{pair[1]:g}"

    return (f"{work.conversations} chats of {span(work.turns)} turns starting over "
            f"{work.arrive_s:g} s, {span(work.think_s)} s think time, {work.apps} shared system "
            f"prompts of {span(work.system_words)} tokens, user turns {span(work.user_words)}, "
            f"answers {span(work.answer_tokens)}; {REPLICAS} replicas, prefill "
            f"{work.prefill_ms:g} ms/token, decode {work.decode_ms:g} ms/token, "
            f"{work.max_num_seqs} slots, {work.cache_blocks} cache blocks of {BLOCK_SIZE}")


def main() -> None:
    work, plot_path = parse()
    chats = script(work)
    oracle = Oracle(REPLICAS, work.cache_blocks)
    spread: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engines, oracle_urls = start_oracle_engines(work, Path(tmp))
        proc, gateway = start_gateway(Path(tmp), work, oracle_urls)
        try:
            models = [*POLICIES, *(f"oracle-{k}" for k in range(REPLICAS))]
            for model in models:  # start every model first: starts are not measured
                httpx.post(gateway + "/v1/chat/completions", timeout=60, json={
                    "model": model, "messages": [{"role": "user", "content": "warm"}],
                    "max_tokens": 1}).raise_for_status()
            before = {arm: served(gateway, arm) for arm in POLICIES}
            urls = {arm: addresses(gateway, arm) for arm in POLICIES} | {"oracle": oracle_urls}
            engine_before = {arm: engine_ttft(u) for arm, u in urls.items()}
            try:
                results = asyncio.run(run_all(chats, gateway, oracle))
            except Exception:
                print((Path(tmp) / "gateway.log").read_text()[-3000:], file=sys.stderr)
                raise
            for arm in POLICIES:
                spread[arm] = sorted(a - b for a, b in zip(served(gateway, arm), before[arm],
                                                           strict=True))
            spread["oracle"] = sorted(oracle.sent)
            engine_ms = {}
            for arm, u in urls.items():
                (sum_after, n_after), (sum_before, n_before) = engine_ttft(u), engine_before[arm]
                engine_ms[arm] = (sum_after - sum_before) / max(1, n_after - n_before) * 1e3
        finally:
            proc.terminate()
            proc.wait(20)
            for engine in engines:
                engine.terminate()
                engine.wait(10)

    summary = {arm: results[arm].summary() for arm in ARMS}
    requests = len(results["oracle"].ttfts)
    hash_us, choose_us, blocks = hint_cost(results["prefix_aware"].bodies)
    title = describe(work)
    print(f"# routing — {time.strftime('%Y-%m-%d %H:%M')} — {platform.node()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"# {title}; {requests} requests per arm")
    print(f"{'arm':<20}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'cached %':>10}")
    for arm, s in summary.items():
        print(f"{arm:<20}{s['mean']:>10.1f}{s['p50']:>10.1f}{s['p99']:>10.1f}{s['rps']:>10.2f}"
              f"{s['cached']:>10.1f}")
    print("# uncached prompt tokens per arm, ×1000 (the engines' prefill work): " + ", ".join(
        f"{arm} {(r.prompt_tokens - r.cached_tokens) / 1000:.0f}" for arm, r in results.items()))
    print("# mean TTFT ms at the engines (their own histogram: no relay, no client): " +
          ", ".join(f"{arm} {ms:.1f}" for arm, ms in engine_ms.items()))
    for arm in ARMS:
        print(f"# requests per instance, {arm}: {spread[arm]}")
    turns = sorted(results["oracle"].by_turn)
    print("# mean TTFT ms by turn " + " ".join(f"{t + 1:>6}" for t in turns))
    for arm, r in results.items():
        print(f"# {arm:<20}" + " ".join(f"{statistics.fmean(r.by_turn[t]) * 1e3:>6.0f}"
                                         for t in turns))
    rr, pa, best = (summary[a]["mean"] for a in ("round_robin", "prefix_aware", "oracle"))
    print(f"prefix_aware vs round_robin mean TTFT: {rr / pa:.2f}x lower; "
          f"vs oracle: {(pa / best - 1) * 100:+.1f} %")
    print(f"# hint cost per request: prefix_hashes {hash_us:.1f} µs, prefix_aware choose "
          f"{choose_us:.1f} µs ({blocks:.1f} blocks per prompt on average)")
    if plot_path:
        plot(results, summary, engine_ms, plot_path, title)


if __name__ == "__main__":
    main()
