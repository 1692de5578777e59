"""The benchmark scripts run (in their smoke mode), so they cannot rot."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


def test_bench_relay_overhead_smoke() -> None:
    out = subprocess.run([sys.executable, str(REPO / "bench" / "relay_overhead.py"), "--smoke"],
                         capture_output=True, text=True, timeout=180, check=True).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.split()[:1] in (["direct"], ["gateway"])}
    assert set(rows) == {"direct", "gateway"}
    assert all(len(values) == 4 and float(values[3]) > 0 for values in rows.values())
    assert "added latency: p50" in out


def test_bench_routing_smoke() -> None:
    out = subprocess.run([sys.executable, str(REPO / "bench" / "routing.py"), "--smoke"],
                         capture_output=True, text=True, timeout=180, check=True).stdout
    arms = ("round_robin", "least_outstanding", "power_of_two", "prefix_aware", "session",
            "oracle")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if len(line.split()) == 6 and line.split()[0] in arms}
    assert set(rows) == set(arms)
    assert all(float(values[0]) > 0 and float(values[3]) > 0 for values in rows.values())
    assert "prefix_aware vs round_robin mean TTFT" in out


@pytest.mark.timeout(900)  # the first run installs LiteLLM into bench/.litellm-venv
def test_bench_compare_smoke(tmp_path: Path) -> None:
    """Every arm runs (direct, nginx, LiteLLM, modelfleet), and cold start spawns one engine."""
    missing = [tool for tool in ("nginx", "wrk") if not _have(tool)]
    assert not missing, f"install {missing} (Debian: apt-get install -y nginx wrk)"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "compare.py"), "--smoke",
         "--plot", str(tmp_path / "compare.png"), "--json", str(tmp_path / "compare.json")],
        capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((tmp_path / "compare.json").read_text())
    arms = figures["arms"]
    assert set(arms) == {"direct", "nginx", "litellm", "modelfleet"}
    for name, arm in arms.items():
        assert arm["rps"]["pinned"] > 0 and arm["rps"]["box"] > 0, name
        assert arm["sse"]["requests"] > 0 and arm["sse"]["p50_ms"] > 0, name
        assert arm["latency"]["40.0"].get("p50_ms", 0) > 0 or name == "litellm", name
    assert arms["modelfleet"]["rss_after_mb"] > 0
    assert figures["cold_start"]["spawns"] == [1]
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    assert "| modelfleet |" in done.stdout


def _have(tool: str) -> bool:
    return shutil.which(tool) is not None or Path("/usr/sbin", tool).exists()
