"""The simulator's counters and histograms, and their Prometheus text for ``GET /metrics``.

Hand-written exposition format 0.0.4 (no prometheus_client dependency), with
vLLM's metric names and its ``model_name`` label so that whatever scrapes a
vLLM engine (the gateway's load-aware routing, a dashboard) scrapes this one.
Counter families are announced under their full ``_total`` name, as
prometheus_client does. Token counts for the prefix cache are in tokens, as in
vLLM. Buckets are vLLM's; inter-token latency and e2e latency get a finer low
end because simulated timings are often a few milliseconds.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from functools import partial

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
               0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0,
                   20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
FINISH_REASONS = ("stop", "length", "abort")


class Histogram:
    """A Prometheus histogram: per-bucket counts (cumulated when rendered), sum, count."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        """Record ``value`` ``times`` times (a value above every bucket lands in +Inf only)."""
        if times < 1:
            return
        index = bisect_left(self.buckets, value)  # first bucket with value <= le
        if index < len(self.buckets):
            self.counts[index] += times
        self.sum += value * times
        self.count += times


@dataclass
class Metrics:
    """Everything the engine counts. Gauges (running, waiting, KV usage) are read live."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_cache_queries: int = 0  # prompt tokens looked up in the prefix cache
    prefix_cache_hits: int = 0  # of which found cached
    finished: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISH_REASONS, 0))
    aborted: int = 0  # client disconnects and /abort_requests
    rejected: int = 0  # queue full
    kv_transferred_tokens: int = 0  # decode role: prompt tokens whose KV came from a prefill
    kv_missing: int = 0  # decode role: requests without a prefill handle
    images_encoded: int = 0
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    tpot: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    queue_time: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))

    def render(self, model: str, running: int, waiting: int, kv_usage: float) -> str:
        """The Prometheus text exposition of every metric, labelled ``model_name=model``."""
        label = f'model_name="{_escape(model)}"'
        out: list[str] = []
        gauge = partial(_single, out, label, "gauge")
        counter = partial(_single, out, label, "counter")
        gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
              running)
        gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
              waiting)
        gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", kv_usage)
        counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.",
                self.prompt_tokens)
        counter("vllm:generation_tokens_total", "Number of generation tokens processed.",
                self.generation_tokens)
        counter("vllm:prefix_cache_queries_total",
                "Prefix cache queries, in terms of number of queried tokens.",
                self.prefix_cache_queries)
        counter("vllm:prefix_cache_hits_total",
                "Prefix cache hits, in terms of number of cached tokens.", self.prefix_cache_hits)
        _header(out, "vllm:request_success_total",
                "Count of successfully processed requests.", "counter")
        for reason, count in self.finished.items():
            out.append(f'vllm:request_success_total{{finished_reason="{reason}",{label}}} '
                       f"{count}")
        for name, doc, hist in (
            ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
             self.ttft),
            ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
             self.itl),
            ("vllm:request_time_per_output_token_seconds",
             "Histogram of time_per_output_token_seconds per request.", self.tpot),
            ("vllm:e2e_request_latency_seconds",
             "Histogram of e2e request latency in seconds.", self.e2e),
            ("vllm:request_queue_time_seconds",
             "Histogram of time spent in WAITING phase for request.", self.queue_time),
        ):
            _histogram(out, name, doc, label, hist)
        counter("modelfleet_engine_requests_aborted_total",
                "Requests aborted by a client disconnect or /abort_requests.", self.aborted)
        counter("modelfleet_engine_requests_rejected_total",
                "Requests refused with 503 because the queue was full.", self.rejected)
        counter("modelfleet_engine_kv_transferred_tokens_total",
                "Prompt tokens a decode instance took from a remote prefill.",
                self.kv_transferred_tokens)
        counter("modelfleet_engine_kv_missing_total",
                "Requests a decode instance prefilled itself for want of a prefill handle.",
                self.kv_missing)
        counter("modelfleet_engine_images_encoded_total",
                "Image parts run through the (simulated) encoder.", self.images_encoded)
        return "\n".join(out) + "\n"


def _single(out: list[str], label: str, kind: str, name: str, doc: str, value: float) -> None:
    """One family with one sample, labelled only by model."""
    _header(out, name, doc, kind)
    out.append(f"{name}{{{label}}} {_number(value)}")


def _header(out: list[str], name: str, doc: str, kind: str) -> None:
    out.append(f"# HELP {name} {doc}")
    out.append(f"# TYPE {name} {kind}")


def _histogram(out: list[str], name: str, doc: str, label: str, hist: Histogram) -> None:
    _header(out, name, doc, "histogram")
    cumulative = 0
    for bound, count in zip(hist.buckets, hist.counts, strict=True):
        cumulative += count
        out.append(f'{name}_bucket{{le="{_number(bound)}",{label}}} {cumulative}')
    out.append(f'{name}_bucket{{le="+Inf",{label}}} {hist.count}')
    out.append(f"{name}_sum{{{label}}} {_number(hist.sum)}")
    out.append(f"{name}_count{{{label}}} {hist.count}")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _escape(value: str) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
