"""What engine processes use right now: resident memory and CPU, with their children.

CPU is measured between two calls (psutil's way), so the process handles are kept
from one call to the next; a handle whose process is gone is dropped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import psutil

MB = 1024 * 1024
_handles: dict[int, psutil.Process] = {}


def _tree(pid: int) -> list[psutil.Process]:
    proc = _handles.get(pid)
    if proc is None:
        proc = _handles[pid] = psutil.Process(pid)
        proc.cpu_percent(None)  # the first reading is always 0: start the clock
    return [proc, *proc.children(recursive=True)]


def process_usage(pids: Iterable[int]) -> dict[str, float | None]:
    """``{"memory": MB, "cpu_cores": cores busy}`` summed over ``pids`` and their children;
    None for both when none of them can be read."""
    memory = cpu = 0.0
    seen = False
    for pid in pids:
        try:
            for proc in _tree(pid):
                with contextlib.suppress(psutil.Error):
                    memory += proc.memory_info().rss / MB
                    if proc.pid in _handles:
                        cpu += proc.cpu_percent(None) / 100
                    seen = True
        except psutil.Error:
            _handles.pop(pid, None)
    live = {p for p in _handles if psutil.pid_exists(p)}
    for gone in set(_handles) - live:
        del _handles[gone]
    if not seen:
        return {"memory": None, "cpu_cores": None}
    return {"memory": round(memory, 1), "cpu_cores": round(cpu, 2)}
