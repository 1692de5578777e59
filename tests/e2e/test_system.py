"""Seed 002's system monitoring API and seed 001's ``/health`` gpu block, on a real gateway.

There is no GPU here: one gateway reads NVML through the fake (``nvml_module``),
the other has no NVML driver at all and must report no GPUs, not fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import REPO, simulator_model, start_gateway, wait_until

STATUS_FIELDS = {"status", "version", "uptime", "models", "resources", "gpu"}
GPU_FIELDS = {"id", "name", "driver_version", "cuda_version", "utilization", "memory_used",
              "memory_total", "memory_free", "temperature", "power_usage", "power_limit",
              "processes"}
HEALTH_GPU = {"name", "allocated_gb", "reserved_gb", "total_gb", "free_gb",
              "utilization_percent"}


def test_system_routes_with_two_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the gateway imports tests.fake_nvml
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    gw = start_gateway(tmp_path, [simulator_model("sim-up", auto_start=True),
                                  simulator_model("sim-down")],
                       nvml_module="tests.fake_nvml")
    try:
        wait_until(lambda: gw.get("/health")["running_models"] == 1, timeout=60)

        status = gw.get("/api/system/status")
        assert STATUS_FIELDS <= set(status) and status["status"] == "healthy"
        assert isinstance(status["uptime"], int) and status["version"]
        assert {k: status["models"][k] for k in ("total", "running", "stopped", "error")} == {
            "total": 2, "running": 1, "stopped": 1, "error": 0}
        resources = status["resources"]
        for key in ("cpu_percent", "memory_percent", "disk_percent"):
            assert isinstance(resources[key], float) and 0 <= resources[key] <= 100, key
        assert status["gpu"][0] == {"id": 0, "name": "NVIDIA RTX 4090", "utilization": 78.0,
                                    "memory_used": 12288, "memory_total": 24576,
                                    "temperature": 65.0}
        assert [g["id"] for g in status["gpu"]] == [0, 1]

        gpus = gw.get("/api/system/gpu")["gpus"]
        assert len(gpus) == 2 and all(GPU_FIELDS <= set(g) for g in gpus)
        first = gpus[0]
        assert (first["driver_version"], first["cuda_version"]) == ("535.86.10", "12.2")
        assert (first["memory_free"], first["power_usage"], first["power_limit"]) == (
            12288, 350.0, 450.0)
        # the fake puts the gateway's own process on GPU 0; its name comes from psutil
        assert first["processes"] == [{"pid": gw.proc.pid, "name": first["processes"][0]["name"],
                                       "memory_usage": 8192}]
        assert "python" in first["processes"][0]["name"].lower()

        health = gw.get("/health")
        assert set(health["gpu"]) == HEALTH_GPU
        assert health["gpu"] == {"name": "NVIDIA RTX 4090", "allocated_gb": 12.0,
                                 "reserved_gb": 12.0, "total_gb": 24.0, "free_gb": 12.0,
                                 "utilization_percent": 78.0}
        assert {"status", "models_count", "running_models", "limits"} <= set(health)

        cuda = gw.get("/api/devices/info")["devices"]["cuda"]
        assert cuda["online"] is True and cuda["info"]["device_count"] == 2
        assert cuda["info"]["devices"][1]["temperature"] == 41.0
    finally:
        gw.stop()


def test_system_routes_without_nvml(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("sim")])
    try:
        assert gw.get("/api/system/gpu") == {"gpus": []}
        status = gw.get("/api/system/status")
        assert STATUS_FIELDS <= set(status) and status["gpu"] == []
        assert status["models"]["total"] == 1 and status["models"]["stopped"] == 1
        assert status["resources"]["memory_percent"] > 0
        health = gw.get("/health")
        assert "gpu" in health and health["gpu"] is None
        assert gw.get("/api/devices/info")["devices"]["cuda"]["online"] is False
    finally:
        gw.stop()
