"""modelfleet side by side with nginx and the LiteLLM proxy, on the same upstreams.

Arms (``bench/arms.py``), all up at once and measured in one run, interleaved:
direct to the upstream, nginx ``proxy_pass``, LiteLLM's proxy, and modelfleet
with auth, a rate limit and metrics on. Upstreams: nginx answering one
chat.completion (non-streaming) and a paced SSE server (20 chunks × 20 ms).

Figures per arm:

* max requests/s (wrk), the gateway pinned to core 0 with the load and the
  upstreams on core 1, then again with everything free on the whole box;
* latency at fixed arrival rates (open loop, pinned), and the latency added
  over the direct arm at the same rate;
* streams at a fixed rate: time to the first token (added over direct) and
  chunks lost;
* the gateway's resident memory idle and after ``--rss-requests`` requests;
* cold start (modelfleet only): concurrent requests for a stopped simulator
  model, the engines spawned and the time added over the engine's own start.

    .venv/bin/python bench/compare.py                  # full run, under 10 minutes
    .venv/bin/python bench/compare.py --smoke          # every arm, seconds; `make test`

The first run installs LiteLLM into bench/.litellm-venv (about a minute).
nginx and wrk come from Debian: ``apt-get install -y nginx wrk``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import orjson
from arms import ARMS, start_stack
from coldstart import cold_start
from measure import ArmResult, latency, set_layout, sse, throughput, top_up
from report import as_json, figures, from_json, plot, tables, target_lines

REPO = Path(__file__).resolve().parent.parent
PLOT = REPO / "docs" / "img" / "bench_compare.png"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="every arm, tiny durations")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset")
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every measurement")
    parser.add_argument("--rates", default="40,500,1000", help="open-loop rates, requests/s")
    parser.add_argument("--latency-seconds", type=float, default=4.0, help="per open-loop run")
    parser.add_argument("--sse-rate", type=float, default=200.0, help="streams per second")
    parser.add_argument("--sse-seconds", type=float, default=4.0)
    parser.add_argument("--chunks", type=int, default=20, help="chunks per stream")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="between chunks")
    parser.add_argument("--rss-requests", type=int, default=100_000)
    parser.add_argument("--rss-cap-s", type=float, default=60.0,
                        help="longest top-up run towards --rss-requests")
    parser.add_argument("--cold-requests", type=int, default=100)
    parser.add_argument("--cold-rounds", type=int, default=3)
    parser.add_argument("--plot", type=Path, help=f"PNG to write (full run: {PLOT})")
    parser.add_argument("--json", type=Path, help="write every figure as JSON here")
    parser.add_argument("--from-json", type=Path,
                        help="measure nothing: print and plot what an earlier --json holds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.rounds, args.latency_seconds, args.sse_seconds = 2, 1, 0.5, 0.5
        args.rates, args.sse_rate, args.rss_requests, args.rss_cap_s = "40,200", 50, 3000, 2
        args.cold_requests, args.cold_rounds = 20, 1
    elif args.plot is None:
        args.plot = PLOT
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.from_json:
        replay(args)
        return
    rates = [float(r) for r in args.rates.split(",")]
    names = tuple(n for n in args.arms.split(",") if n)
    began = time.monotonic()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "cpu": _cpu_model(), "load_before": os.getloadavg()}
    print(f"# compare — {meta['date']} — {meta['cpu']}, {meta['cpus']} cores, "
          f"Python {meta['python']}, load average {_load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp_name:
        tmp = Path(tmp_name)
        stack = start_stack(tmp, args.chunks, args.chunk_ms, names)
        try:
            results = {name: ArmResult() for name in stack.arms}
            set_layout(stack, "pinned")
            for name, arm in stack.arms.items():
                results[name].rss_idle_mb = arm.service.rss_mb() if arm.service else 0.0
            _step("arms up", began)
            throughput(stack, results, tmp, "pinned", args.seconds, args.rounds,
                       warm=min(1.0, args.seconds))
            _step("max requests/s, pinned", began)
            throughput(stack, results, tmp, "box", args.seconds, args.rounds)
            _step("max requests/s, whole box", began)
            latency(stack, results, rates, args.latency_seconds, args.rounds)
            _step("latency at fixed rates", began)
            sse(stack, results, args.sse_rate, args.sse_seconds, args.rounds, args.chunks)
            _step("streams", began)
            top_up(stack, results, tmp, args.rss_requests, args.rss_cap_s)
            for name, arm in stack.arms.items():
                results[name].rss_after_mb = arm.service.rss_mb() if arm.service else 0.0
            _step("memory after the run", began)
        finally:
            stack.stop()
        cold = None
        if "modelfleet" in names:
            cold = cold_start(tmp / "cold", args.cold_requests, args.cold_rounds)
            _step("cold start", began)
    meta["load_after"] = os.getloadavg()
    meta["seconds"] = round(time.monotonic() - began)
    figs = figures(results, rates)
    print("\n".join(["", *tables(results, rates), ""]))
    if cold:
        print(f"cold start: {cold['requests']} concurrent requests, {cold['rounds']} rounds: "
              f"engines spawned {cold['spawns']}; engine's own start "
              f"{cold['engine_start_ms']:.0f} ms; added: first answer "
              f"+{cold['added_first_ms']:.0f} ms, last +{cold['added_last_ms']:.0f} ms")
    if figs:
        print("modelfleet: " + ", ".join(
            f"{k} {v:.3g}" for k, v in figs.items() if v is not None and k.startswith("vs_")))
        print("\n".join(target_lines(figs)))
    print(f"# took {meta['seconds']} s; load average after {_load()}")
    if args.plot:
        plot(results, rates, args.plot,
             f"{meta['date']}, {meta['cpu']} ({meta['cpus']} cores); gateway on 1 core, "
             f"load and upstreams on the other")
        print(f"# plot: {args.plot}")
    if args.json:
        args.json.write_bytes(orjson.dumps(as_json(results, cold, figs, meta),
                                           option=orjson.OPT_INDENT_2))
    if cold and any(n != 1 for n in cold["spawns"]):
        sys.exit(f"cold start spawned {cold['spawns']} engines; one per burst expected")


def replay(args: argparse.Namespace) -> None:
    data = orjson.loads(args.from_json.read_bytes())
    results, rates = from_json(data)
    meta = data["meta"]
    print("\n".join([*tables(results, rates), ""]))
    print("\n".join(target_lines(figures(results, rates))))
    if args.plot:
        plot(results, rates, args.plot,
             f"{meta['date']}, {meta['cpu']} ({meta['cpus']} cores); gateway on 1 core, "
             f"load and upstreams on the other")
        print(f"# plot: {args.plot}")


def _step(what: str, began: float) -> None:
    print(f"# {time.monotonic() - began:6.1f} s  {what}", flush=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
