"""Max requests/s with wrk: a closed loop of keep-alive connections POSTing one body."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from procs import taskset


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    failed: int  # non-2xx answers and socket errors

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.failed == 0


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y nginx wrk)")
    return found


def lua_script(path: Path, body: bytes, headers: dict[str, str]) -> Path:
    """A wrk script that POSTs ``body`` with ``headers``."""
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body.decode()}]==]",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(url: str, script: Path, seconds: float, connections: int, threads: int,
            cpus: frozenset[int] | None = None) -> WrkResult:
    """wrk against ``url`` for ``seconds``; on ``cpus`` when given."""
    argv = taskset(cpus, [wrk_binary(), f"-t{threads}", f"-c{connections}",
                          f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script),
                          url])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> WrkResult:
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s|m)\b", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not done or not rps:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    seconds = float(done.group(2)) * {"s": 1, "ms": 1e-3, "m": 60}[done.group(3)]
    failed = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        failed += int(non2xx.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    if errors:
        failed += sum(int(n) for n in errors.groups())
    return WrkResult(int(done.group(1)), seconds, float(rps.group(1)), failed)
