"""One record per request, and the book that turns records into every view of them.

The gateway measures what it can see: time spent queued, time to the first
token it relayed (streams), time per output token after it, end to end, tokens
in and out, status and error type, and where the request went (model,
instance, role) and for whom (key). ``MetricsBook.record`` feeds Prometheus
(``prom.py``), the per-model and global sliding windows behind the JSON views,
and the counters of seed 001's ``/api/v1/metrics``.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelfleet.observability.prom import PromMetrics
from modelfleet.observability.window import Window

# Seed 001's latency histogram, in seconds.
LATENCY_BUCKETS = [(0.1, "0-100ms"), (0.5, "100-500ms"), (1.0, "500-1000ms"), (2.0, "1-2s"),
                   (5.0, "2-5s"), (10.0, "5-10s"), (float("inf"), ">10s")]
RATE_WINDOW_S = 60
MAX_INSTANCES = 512


@dataclass(slots=True)
class RequestRecord:
    model: str
    route: str
    status: int
    e2e_s: float
    instance: str = ""
    role: str = "pd"
    key_id: str | None = None
    queue_s: float = 0.0
    ttft_s: float | None = None  # streams: the first token relayed
    tpot_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error_type: str | None = None  # the error code, when it failed
    stream: bool = False
    at: float = field(default_factory=time.time)
    # One step of a disaggregated request (its encode or prefill): counted for its
    # instance only, since the client's request has its own record.
    stage: bool = False

    @property
    def ok(self) -> bool:
        return self.status < 400 and self.error_type is None


@dataclass
class Series:
    """The windows and counters of one model (or of everything)."""

    ttft: Window = field(default_factory=Window)
    tpot: Window = field(default_factory=Window)
    e2e: Window = field(default_factory=Window)
    queue: Window = field(default_factory=Window)
    decode_rate: Window = field(default_factory=Window)  # completion tokens / decode time
    total: int = 0
    ok: int = 0
    failed: int = 0
    aborted: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    histogram: Counter[str] = field(default_factory=Counter)
    # Requests finished in each of the last RATE_WINDOW_S seconds: (second, count) slots.
    _slots: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)] * RATE_WINDOW_S)

    def add(self, rec: RequestRecord, now: float) -> None:
        self.total += 1
        if rec.status == 499:
            self.aborted += 1
        elif rec.ok:
            self.ok += 1
        else:
            self.failed += 1
            self.errors[rec.error_type or f"HTTP_{rec.status}"] += 1
        self.prompt_tokens += rec.prompt_tokens
        self.completion_tokens += rec.completion_tokens
        second = int(now)
        at, n = self._slots[second % RATE_WINDOW_S]
        self._slots[second % RATE_WINDOW_S] = (second, n + 1 if at == second else 1)
        self.e2e.add(rec.e2e_s, now)
        self.queue.add(rec.queue_s, now)
        self.histogram[_bucket(rec.e2e_s)] += 1
        if rec.ttft_s is not None:
            self.ttft.add(rec.ttft_s, now)
        if rec.tpot_s is not None:
            self.tpot.add(rec.tpot_s, now)
        if rec.ttft_s is not None and rec.completion_tokens > 1 and rec.e2e_s > rec.ttft_s:
            self.decode_rate.add((rec.completion_tokens - 1) / (rec.e2e_s - rec.ttft_s), now)

    def requests_per_second(self, now: float) -> float:
        """Requests finished per second over the last RATE_WINDOW_S seconds."""
        second = int(now)
        return sum(n for at, n in self._slots if second - at < RATE_WINDOW_S) / RATE_WINDOW_S

    def performance(self, now: float) -> dict[str, Any]:
        """Seed 002's ``performance_stats`` (over the window), with the counts behind them."""
        e2e = self.e2e.summary(now)
        counted = self.ok + self.failed
        return {"avg_response_time": e2e["mean"], "max_response_time": e2e["max"],
                "min_response_time": e2e["min"],
                "requests_per_second": round(self.requests_per_second(now), 3),
                "error_rate": round(self.failed / counted, 4) if counted else None,
                "requests": self.total, "succeeded": self.ok, "failed": self.failed,
                "aborted": self.aborted, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens}


def _bucket(seconds: float) -> str:
    for bound, name in LATENCY_BUCKETS:  # a loop, not next(genexpr): once per request
        if seconds < bound:
            return name
    return LATENCY_BUCKETS[-1][1]


class MetricsBook:
    def __init__(self) -> None:
        self.prom = PromMetrics()
        self.all = Series()
        self.models: dict[str, Series] = defaultdict(Series)
        self.instances: dict[str, Series] = defaultdict(Series)  # by instance address
        self.peak_running = 0
        self.started = time.time()
        self.listeners: list[Callable[[RequestRecord], None]] = []  # e.g. the time series

    def record(self, rec: RequestRecord) -> None:
        now = time.monotonic()
        if rec.stage:
            self._add_instance(rec, now)
            self.prom.e2e.labels(rec.model, rec.instance or "none", rec.role).observe(rec.e2e_s)
            return
        self.all.add(rec, now)
        if rec.model:  # "" : refused before a model was known
            self.models[rec.model].add(rec, now)
        self._add_instance(rec, now)
        self.prom.observe(rec)
        for listener in self.listeners:
            listener(rec)

    def _add_instance(self, rec: RequestRecord, now: float) -> None:
        if rec.instance:
            if rec.instance not in self.instances and len(self.instances) >= MAX_INSTANCES:
                del self.instances[next(iter(self.instances))]  # the longest gone, likely
            self.instances[rec.instance].add(rec, now)

    def note_running(self, running: int) -> None:
        self.peak_running = max(self.peak_running, running)

    def snapshot(self) -> dict[str | None, dict[str, float]]:
        """Alert rules' view: global figures (key None) and each model's."""
        now = time.monotonic()
        out: dict[str | None, dict[str, float]] = {None: _alert_figures(self.all, now)}
        for name, series in self.models.items():
            out[name] = _alert_figures(series, now)
        return out


def _alert_figures(series: Series, now: float) -> dict[str, float]:
    figures: dict[str, float] = {"requests_per_second": series.requests_per_second(now)}
    counted = series.ok + series.failed
    if counted:
        figures["error_rate"] = series.failed / counted
    for name, window in (("ttft", series.ttft), ("latency", series.e2e)):
        summary = window.summary(now)
        for pct in ("p50", "p95", "p99"):
            if summary[pct] is not None:
                figures[f"{name}_{pct}"] = summary[pct]
    tpot = series.tpot.summary(now)["mean"]
    if tpot is not None:
        figures["tpot_mean"] = tpot
    return figures


def summary_of(series: Series) -> dict[str, Any]:
    now = time.monotonic()
    return {"ttft": series.ttft.summary(now), "tpot": series.tpot.summary(now),
            "latency": series.e2e.summary(now), "queue": series.queue.summary(now),
            "decode_rate": series.decode_rate.summary(now),
            "requests_per_second": round(series.requests_per_second(now), 3)}
