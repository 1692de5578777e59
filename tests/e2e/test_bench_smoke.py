"""The benchmark scripts run (in their smoke mode), so they cannot rot."""

import subprocess
import sys

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
