"""Percentiles over a sliding window, without keeping every sample forever.

A ``Window`` keeps the samples of the last ``span_s`` seconds, at most ``cap`` of
them (the oldest go first), and sorts them only when asked for figures. Samples
live in two arrays of doubles (16 bytes a sample, not a tuple and two floats:
a gateway holds a few dozen full windows); the arrays grow on demand, and the
part that fell out of the window is cut off once it is as long as the window.
"""

from __future__ import annotations

import math
import time
from array import array
from typing import Any

SPAN_S = 300.0
CAP = 4096


class Window:
    __slots__ = ("span_s", "cap", "_at", "_values", "_start")

    def __init__(self, span_s: float = SPAN_S, cap: int = CAP):
        self.span_s = span_s
        self.cap = cap
        self._at = array("d")
        self._values = array("d")
        self._start = 0  # samples before this index have left the window

    def add(self, value: float, now: float | None = None) -> None:
        self._at.append(time.monotonic() if now is None else now)
        self._values.append(value)
        if len(self._at) - self._start > self.cap:
            self._start += 1
            if self._start >= self.cap:
                self._compact()

    def values(self, now: float | None = None) -> list[float]:
        horizon = (time.monotonic() if now is None else now) - self.span_s
        at, start, end = self._at, self._start, len(self._at)
        while start < end and at[start] < horizon:
            start += 1
        self._start = start
        if start >= self.cap:
            self._compact()
        return self._values[self._start:].tolist()

    def _compact(self) -> None:
        del self._at[:self._start]
        del self._values[:self._start]
        self._start = 0

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """mean, p50, p95, p99, min, max and the sample count (None figures when empty)."""
        values = sorted(self.values(now))
        if not values:
            return {"mean": None, "p50": None, "p95": None, "p99": None, "min": None,
                    "max": None, "count": 0}
        return {"mean": round(sum(values) / len(values), 4), "p50": _pct(values, 50),
                "p95": _pct(values, 95), "p99": _pct(values, 99), "min": round(values[0], 4),
                "max": round(values[-1], 4), "count": len(values)}


def _pct(ordered: list[float], pct: float) -> float:
    """The nearest-rank percentile of sorted values."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return round(ordered[rank - 1], 4)
