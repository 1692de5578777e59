"""Seed 002's time series against a running gateway: buckets written from real traffic,
read back at each interval, per-model performance, and bad queries refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.helpers import Gateway, simulator_model, start_gateway, wait_until


def _get(gw: Gateway, path: str, **params: Any) -> httpx.Response:
    return httpx.get(gw.url + path, params=params, timeout=30)


def test_time_series_from_traffic(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("sim"), simulator_model("idle")],
                       rollup_interval_s=0.5)
    try:
        for _ in range(5):
            r = gw.post("/v1/chat/completions", json={
                "model": "sim", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
        gw.post("/v1/chat/completions", json={"model": "sim", "messages": "bad"})

        def written() -> Any:
            body = _get(gw, "/api/monitoring/metrics", interval="1m").json()
            entries = [e for e in body["metrics"] if "models" in e]
            return body if entries and entries[-1]["models"]["sim"]["requests"] >= 5 else None

        body = wait_until(written, timeout=20)
        entry = [e for e in body["metrics"] if "models" in e][-1]
        sim = entry["models"]["sim"]
        assert sim["requests"] == 5 and sim["failed"] == 0  # the bad body never reached it
        assert sim["avg_response_time"] > 0 and entry["timestamp"].endswith("Z")
        assert entry["cpu_percent"] is not None and entry["memory_percent"] is not None
        for key in ("avg_gpu_utilization", "max_gpu_utilization", "avg_response_time"):
            assert key in body["summary"]
        for interval in ("5m", "1h", "1d"):
            other = _get(gw, "/api/monitoring/metrics", interval=interval).json()
            totals = [e["models"]["sim"]["requests"] for e in other["metrics"] if "models" in e]
            assert sum(totals) == 5, (interval, other)
        cpu = _get(gw, "/api/monitoring/metrics", metric_type="cpu").json()["metrics"]
        assert cpu and all("memory_percent" not in e and "models" not in e for e in cpu)

        perf = _get(gw, "/api/monitoring/performance", time_range="1h").json()
        assert perf["time_range"] == "1h"
        (row,) = [m for m in perf["models"] if m["model_name"] == "sim"]
        assert row["total_requests"] == 5 and row["successful_requests"] == 5
        assert row["error_rate"] == 0 and row["avg_response_time"] > 0
        for key in ("max_response_time", "min_response_time", "requests_per_second"):
            assert key in row
        assert set(perf["system"]) == {"avg_cpu_percent", "avg_memory_percent",
                                       "avg_gpu_utilization"}
        one = _get(gw, "/api/monitoring/performance", model_id="sim", time_range="30d").json()
        assert [m["model_name"] for m in one["models"]] == ["sim"]

        for path, params in [
            ("/api/monitoring/metrics", {"interval": "2m"}),
            ("/api/monitoring/metrics", {"metric_type": "disk"}),
            ("/api/monitoring/metrics", {"start_time": "yesterday"}),
            ("/api/monitoring/metrics", {"start_time": "2030-01-01T00:00:00Z"}),
            ("/api/monitoring/metrics", {"start_time": "2000-01-01T00:00:00Z"}),
            ("/api/monitoring/performance", {"time_range": "2y"}),
        ]:
            r = _get(gw, path, **params)
            assert r.status_code in (400, 422), (params, r.text)
        assert _get(gw, "/api/monitoring/performance", model_id="nope").status_code == 404
    finally:
        gw.stop()
