"""The tables ``bench/compare.py`` prints, and its plot.

Added latency is an arm's percentile minus the direct arm's at the same rate
(and the same percentile); ratios compare modelfleet with nginx and LiteLLM.
Targets are printed beside the figures, never asserted: speed is measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from measure import ArmResult

# (what, figure, bound, higher is better)
TARGETS = [
    ("req/s per core vs nginx", "vs_nginx_core", 0.10, True),
    ("req/s per core vs LiteLLM", "vs_litellm_core", 60.0, True),
    ("added p50 ms at 1000/s", "added_p50_1000", 0.6, False),
    ("added p99 ms at 1000/s", "added_p99_1000", 2.0, False),
    ("SSE added TTFT p50 ms", "sse_added_p50", 0.5, False),
    ("SSE chunks lost", "sse_lost", 0, False),
    ("RSS idle MB", "rss_idle", 120.0, False),
    ("RSS growth MB after the run", "rss_growth", 10.0, False),
]


def added(results: dict[str, ArmResult], name: str, rate: float, pct: str) -> float | None:
    mine = results[name].latency.get(rate, {})
    base = results["direct"].latency.get(rate, {})
    if pct not in mine or pct not in base:
        return None
    return float(mine[pct] - base[pct])


def sse_added(results: dict[str, ArmResult], name: str, pct: str) -> float | None:
    mine, base = results[name].sse, results["direct"].sse
    if pct not in mine or pct not in base:
        return None
    return float(mine[pct] - base[pct])


def _fmt(value: float | None, digits: int = 3) -> str:
    return "sat." if value is None else f"{value:.{digits}f}"


def tables(results: dict[str, ArmResult], rates: list[float]) -> list[str]:
    """Markdown tables: throughput and memory, latency, streams."""
    out = ["| arm | req/s, 1 core | req/s, 2 cores | RSS idle MB | RSS after MB | requests |",
           "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        idle = f"{r.rss_idle_mb:.1f}" if name != "direct" else "—"
        after = f"{r.rss_after_mb:.1f}" if name != "direct" else "—"
        out.append(f"| {name} | {r.rps.get('pinned', 0):.0f} | {r.rps.get('box', 0):.0f} | "
                   f"{idle} | {after} | {r.served} |")
    out += ["", "| arm | " + " | ".join(f"p50 / p99 ms @{rate:g}/s" for rate in rates) + " |",
            "|---|" + "---:|" * len(rates)]
    for name, r in results.items():
        cells = []
        for rate in rates:
            got = r.latency.get(rate, {})
            if got.get("saturated") or "p50_ms" not in got:
                cells.append("saturated")
            elif name == "direct":
                cells.append(f"{got['p50_ms']:.3f} / {got['p99_ms']:.3f}")
            else:
                cells.append(f"+{_fmt(added(results, name, rate, 'p50_ms'))} / "
                             f"+{_fmt(added(results, name, rate, 'p99_ms'))}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out += ["", "| arm | TTFT p50 ms | TTFT p99 ms | added p50 ms | added p99 ms | "
            "chunks lost | streams | timed out |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        s = r.sse
        if "p50_ms" not in s:
            continue
        out.append(f"| {name} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
                   f"{_fmt(sse_added(results, name, 'p50_ms'))} | "
                   f"{_fmt(sse_added(results, name, 'p99_ms'))} | {s['lost']} | "
                   f"{s['requests']} | {s['timeouts']} |")
    return out


def figures(results: dict[str, ArmResult], rates: list[float]) -> dict[str, float | None]:
    """modelfleet's figures against the others, for the targets and the doc."""
    mf = results.get("modelfleet")
    if mf is None:
        return {}

    def ratio(other: str, layout: str) -> float | None:
        theirs = results[other].rps.get(layout) if other in results else None
        return mf.rps.get(layout, 0) / theirs if theirs else None

    top = max(rates)
    return {
        "vs_nginx_core": ratio("nginx", "pinned"), "vs_nginx_box": ratio("nginx", "box"),
        "vs_litellm_core": ratio("litellm", "pinned"),
        "vs_litellm_box": ratio("litellm", "box"),
        "vs_direct_core": ratio("direct", "pinned"),
        "added_p50_1000": added(results, "modelfleet", top, "p50_ms"),
        "added_p99_1000": added(results, "modelfleet", top, "p99_ms"),
        "sse_added_p50": sse_added(results, "modelfleet", "p50_ms"),
        "sse_lost": mf.sse.get("lost"),
        "rss_idle": mf.rss_idle_mb, "rss_growth": mf.rss_after_mb - mf.rss_idle_mb,
    }


def target_lines(figs: dict[str, float | None]) -> list[str]:
    out = []
    for what, key, bound, higher in TARGETS:
        value = figs.get(key)
        if value is None:
            out.append(f"- {what}: not measured")
            continue
        met = value >= bound if higher else value <= bound
        sign = "≥" if higher else "≤"
        out.append(f"- {what}: {value:.3g} (target {sign} {bound:g}: "
                   f"{'met' if met else 'missed'})")
    return out


def plot(results: dict[str, ArmResult], rates: list[float], path: Path, title: str) -> None:
    """Requests/s per arm and latency against rate (p50, p99), as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    width = 0.38
    for i, (layout, label) in enumerate((("pinned", "gateway on 1 core"),
                                         ("box", "whole box (2 cores)"))):
        values = [results[n].rps.get(layout, 0) for n in names]
        bars = axes[0].bar([x + (i - 0.5) * width for x in range(len(names))], values, width,
                           label=label)
        axes[0].bar_label(bars, fmt="%.0f", fontsize=7)
    axes[0].set_xticks(range(len(names)), names)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("max requests/s (wrk)")
    axes[0].legend(fontsize=8)
    for ax, pct, label in ((axes[1], "p50_ms", "p50"), (axes[2], "p99_ms", "p99")):
        for name in names:
            points = [(rate, results[name].latency[rate][pct]) for rate in rates
                      if pct in results[name].latency.get(rate, {})]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(rates, [f"{r:g}" for r in rates])
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("arrival rate, requests/s (open loop)")
        ax.set_ylabel(f"{label} latency, ms")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def as_json(results: dict[str, ArmResult], cold: dict[str, Any] | None,
            figs: dict[str, float | None], meta: dict[str, Any]) -> dict[str, Any]:
    return {"meta": meta, "cold_start": cold, "figures": figs,
            "arms": {name: {"rss_idle_mb": r.rss_idle_mb, "rss_after_mb": r.rss_after_mb,
                            "served": r.served, "rps": r.rps,
                            "latency": {str(k): v for k, v in r.latency.items()},
                            "sse": r.sse} for name, r in results.items()}}


def from_json(data: dict[str, Any]) -> tuple[dict[str, ArmResult], list[float]]:
    """The results ``as_json`` wrote, and the rates they were measured at."""
    results = {name: ArmResult(rss_idle_mb=arm["rss_idle_mb"], rss_after_mb=arm["rss_after_mb"],
                               served=arm["served"], rps=arm["rps"],
                               latency={float(k): v for k, v in arm["latency"].items()},
                               sse=arm["sse"])
               for name, arm in data["arms"].items()}
    rates = sorted({rate for r in results.values() for rate in r.latency})
    return results, rates
