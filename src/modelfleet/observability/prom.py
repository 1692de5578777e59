"""The Prometheus view: our own registry, rendered at ``/metrics``.

Histograms of TTFT, TPOT, end-to-end and queue time; counters of requests,
tokens and errors; gauges of running and waiting requests per model and
instance (set at scrape time from the fleet and the admission gates); and
seed 001's names (``vllm_num_waiting_requests``, ``vllm_num_running_requests``,
``vllm_ttft_p95``, ``vllm_decoding_throughput_mean``) for dashboards built on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from modelfleet.observability.records import RequestRecord

LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
PER_TOKEN = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
INSTANCE = ("model", "instance", "role")
MAX_CHILDREN = 8192


class PromMetrics:
    def __init__(self) -> None:
        self._children: dict[tuple[Any, ...], Any] = {}
        self._common: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("modelfleet_requests", "Requests answered, by status code.",
                                ["model", "route", "status"], registry=r)
        self.errors = Counter("modelfleet_request_errors", "Failed requests, by error code.",
                              ["model", "type"], registry=r)
        self.tokens = Counter("modelfleet_tokens", "Tokens processed.",
                              ["model", "kind"], registry=r)
        self.ttft = Histogram("modelfleet_time_to_first_token_seconds",
                              "Time to the first token relayed (streams).", INSTANCE,
                              buckets=LATENCY, registry=r)
        self.tpot = Histogram("modelfleet_time_per_output_token_seconds",
                              "Time per output token after the first (streams).", INSTANCE,
                              buckets=PER_TOKEN, registry=r)
        self.e2e = Histogram("modelfleet_request_duration_seconds",
                             "End-to-end request time at the gateway.", INSTANCE,
                             buckets=LATENCY, registry=r)
        self.queue = Histogram("modelfleet_queue_time_seconds",
                               "Time spent waiting for admission.", ["model"],
                               buckets=LATENCY, registry=r)
        self.running = Gauge("modelfleet_running_requests", "Requests being served.",
                             [*INSTANCE, "address"], registry=r)
        self.waiting = Gauge("modelfleet_waiting_requests", "Requests queued for admission.",
                             ["model"], registry=r)
        self.model_up = Gauge("modelfleet_model_ready", "1 when the model is ready.",
                              ["model", "state"], registry=r)
        self.vllm_waiting = Gauge("vllm_num_waiting_requests",
                                  "Number of requests waiting in queue (all models).",
                                  registry=r)
        self.vllm_running = Gauge("vllm_num_running_requests",
                                  "Number of requests being processed (all models).",
                                  registry=r)
        self.vllm_ttft_p95 = Gauge("vllm_ttft_p95", "P95 time to first token, seconds.",
                                   registry=r)
        self.vllm_decoding = Gauge("vllm_decoding_throughput_mean",
                                   "Mean decoding throughput, tokens per second.", registry=r)

    def observe(self, rec: RequestRecord) -> None:
        key = (rec.model, rec.route, rec.status, rec.instance, rec.role)
        common = self._common.get(key)
        if common is None:  # the series every such request touches, looked up once
            if len(self._common) >= MAX_CHILDREN:
                self._common.clear()
            common = self._common[key] = (
                self.requests.labels(rec.model or "-", rec.route, str(rec.status)),
                self.e2e.labels(rec.model, rec.instance or "none", rec.role)
                if rec.model else None,
                self.queue.labels(rec.model) if rec.model else None)
        requests, e2e, queue = common
        requests.inc()
        if not rec.ok and rec.status != 499:
            self._child(self.errors, rec.model or "-", rec.error_type or f"HTTP_{rec.status}"
                        ).inc()
        if e2e is None or queue is None:  # refused before a model was known
            return
        if rec.prompt_tokens:
            self._child(self.tokens, rec.model, "prompt").inc(rec.prompt_tokens)
        if rec.completion_tokens:
            self._child(self.tokens, rec.model, "completion").inc(rec.completion_tokens)
        e2e.observe(rec.e2e_s)
        queue.observe(rec.queue_s)
        instance = rec.instance or "none"
        if rec.ttft_s is not None:
            self._child(self.ttft, rec.model, instance, rec.role).observe(rec.ttft_s)
        if rec.tpot_s is not None:
            self._child(self.tpot, rec.model, instance, rec.role).observe(rec.tpot_s)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: ``labels()`` checks and locks on every
        call, and a request records up to seven series. Only for metrics never cleared
        (the per-request ones); the cache forgets everything past MAX_CHILDREN."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= MAX_CHILDREN:
                self._children.clear()
            child = self._children[key] = metric.labels(*labels)
        return child
