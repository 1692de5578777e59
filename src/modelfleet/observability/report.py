"""The JSON and text views of the request records.

- ``v1_metrics``: seed 001's ``/api/v1/metrics`` object, field for field;
- ``stats``: the same figures per model (``/stats``);
- ``instance_text``: seed 000's per-instance summary (``/metrics?format=text``).

Times in the JSON views are seconds, as seed 001 has them; the text summary is in
milliseconds, as seed 000's is.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from modelfleet.observability.records import LATENCY_BUCKETS, MetricsBook, Series, summary_of


def _slo(series: Series) -> dict[str, Any]:
    s = summary_of(series)
    ttft, decode = s["ttft"], s["decode_rate"]
    total = series.prompt_tokens + series.completion_tokens
    seconds = sum(series.e2e.values()) or 0.0
    return {
        "ttft": {"mean": ttft["mean"], "p50": ttft["p50"], "p95": ttft["p95"],
                 "p99": ttft["p99"], "unit": "seconds"},
        "throughput": {"decoding_mean": decode["mean"], "decoding_p50": decode["p50"],
                       "total": round(total / seconds, 2) if seconds else None,
                       "unit": "tokens/sec"},
        "sample_size": ttft["count"],
    }


def _counts(series: Series, now: float) -> dict[str, Any]:
    done = series.ok + series.failed
    return {
        "total": series.total, "successful": series.ok, "failed": series.failed,
        "aborted": series.aborted,
        "success_rate_percent": round(100 * series.ok / done, 2) if done else 100.0,
        "error_rate_percent": round(100 * series.failed / done, 2) if done else 0.0,
        "requests_per_second": round(series.requests_per_second(now), 3),
    }


def _latency(series: Series) -> dict[str, Any]:
    lat = summary_of(series)["latency"]
    return {k: lat[k] for k in ("mean", "p50", "p95", "p99", "min", "max")} | {
        "unit": "seconds"}


def v1_metrics(book: MetricsBook, *, service: str, version: str, status: str,
               running: int, waiting: int, gpu: dict[str, Any] | None,
               alerts: list[dict[str, Any]]) -> dict[str, Any]:
    now = time.monotonic()
    series = book.all
    uptime = time.time() - book.started
    tokens_total = series.prompt_tokens + series.completion_tokens
    return {
        "timestamp": datetime.now().isoformat(),
        "service": service,
        "version": version,
        "status": status,
        "uptime": {"seconds": round(uptime, 1),
                   "human": f"{int(uptime // 3600)}h {int(uptime % 3600 // 60)}m"},
        "requests": {"waiting": waiting, "running": running,
                     "peak_concurrent": max(book.peak_running, running),
                     **_counts(series, now)},
        "tokens": {"total_input": series.prompt_tokens, "total_output": series.completion_tokens,
                   "avg_per_request": round(tokens_total / series.total, 1)
                   if series.total else 0.0},
        "slo": _slo(series),
        "latency": _latency(series),
        "latency_histogram": {name: series.histogram.get(name, 0)
                              for _, name in LATENCY_BUCKETS},
        "gpu": gpu,
        "errors": {"total": sum(series.errors.values()), "by_type": dict(series.errors)},
        "alerts": alerts,
        "alerts_count": len(alerts),
    }


def stats(book: MetricsBook) -> dict[str, Any]:
    now = time.monotonic()
    models = {}
    for name, series in sorted(book.models.items()):
        models[name] = {"requests": _counts(series, now),
                        "tokens": {"input": series.prompt_tokens,
                                   "output": series.completion_tokens},
                        "slo": _slo(series), "latency": _latency(series),
                        "queue": summary_of(series)["queue"],
                        "errors": dict(series.errors)}
    return {"requests": _counts(book.all, now), "latency": _latency(book.all),
            "slo": _slo(book.all), "models": models}


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.3f} ms"


def instance_text(instances: list[dict[str, Any]]) -> str:
    """Seed 000's summary: one block per instance, averages in milliseconds.

    Each item has ``role`` (pd, encode, prefill, decode), ``address`` and the means
    ``e2e``, ``queue``, ``prefill``, ``tpot``, ``ttft`` (engine-side where known),
    ``proxy_ttft`` and ``proxy_overhead`` in seconds; an unknown figure shows as n/a."""
    names = {"pd": "PD_INSTANCE", "encode": "E_INSTANCE", "prefill": "P_INSTANCE",
             "decode": "D_INSTANCE"}
    lines = []
    for inst in instances:
        kind = names.get(inst["role"], inst["role"].upper() + "_INSTANCE")
        lines += [
            f"Server Type: {kind}",
            f"  Address: {inst['address']}",
            f"    ec_role: {kind}",
            f"    addr: {inst['address']}",
            f"    model: {inst['model']}",
            f"    Avg e2e time requests: {_ms(inst.get('e2e'))}",
            f"    Avg queue time requests: {_ms(inst.get('queue'))}",
            f"    Avg prefill time requests: {_ms(inst.get('prefill'))}",
            f"    Avg mean time per output token requests: {_ms(inst.get('tpot'))}",
            f"    Avg time to first token: {_ms(inst.get('ttft'))}",
            f"    Avg proxy ttft: {_ms(inst.get('proxy_ttft'))}",
            f"    Avg proxy to instance requests time: {_ms(inst.get('proxy_overhead'))}",
        ]
    return "\n".join(lines) + "\n"
