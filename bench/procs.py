"""Processes under test: start, wait for, pin to cores, measure and stop them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ALL_CPUS = frozenset(range(os.cpu_count() or 1))


@dataclass
class Service:
    """A started process (with its children) that ``stop`` ends; ``log`` is its output."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    extra: list[Service] = field(default_factory=list)

    def pids(self) -> list[int]:
        """The process and its descendants (workers, engines), alive now."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def rss_mb(self) -> float:
        """Resident memory of the process and its descendants, in MiB."""
        total = 0
        for pid in self.pids():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        for other in self.extra:
            other.stop()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Service:
    """Start ``argv`` (never a shell) with stdout and stderr into ``log``."""
    out = log.open("wb")
    proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            stdin=subprocess.DEVNULL)
    out.close()
    return Service(name, proc, log)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(service: Service, port: int, timeout: float = 60) -> None:
    """Return once something accepts on 127.0.0.1:``port``; raise if ``service`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.check()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{service.name} did not listen on {port} in {timeout:g} s:\n"
                       f"{service.tail()}")


def pin(pids: Sequence[int], cpus: frozenset[int]) -> None:
    """Bind every thread of ``pids`` to ``cpus`` (threads started later inherit it)."""
    for pid in pids:
        try:
            threads = [t.id for t in psutil.Process(pid).threads()]
        except psutil.NoSuchProcess:
            continue
        for tid in threads:
            try:
                os.sched_setaffinity(tid, cpus)
            except (ProcessLookupError, PermissionError):
                pass


def taskset(cpus: frozenset[int] | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run on ``cpus`` (None: anywhere)."""
    if cpus is None or cpus == ALL_CPUS:
        return list(argv)
    return ["taskset", "-c", ",".join(map(str, sorted(cpus))), *argv]
