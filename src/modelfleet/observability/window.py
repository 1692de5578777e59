"""Percentiles over a sliding window, without keeping every sample forever.

A ``Window`` keeps the samples of the last ``span_s`` seconds, at most ``cap`` of
them (the oldest go first), and sorts them only when asked for figures.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

SPAN_S = 300.0
CAP = 4096


class Window:
    __slots__ = ("span_s", "samples")

    def __init__(self, span_s: float = SPAN_S, cap: int = CAP):
        self.span_s = span_s
        self.samples: deque[tuple[float, float]] = deque(maxlen=cap)

    def add(self, value: float, now: float | None = None) -> None:
        self.samples.append((time.monotonic() if now is None else now, value))

    def values(self, now: float | None = None) -> list[float]:
        horizon = (time.monotonic() if now is None else now) - self.span_s
        while self.samples and self.samples[0][0] < horizon:
            self.samples.popleft()
        return [v for _, v in self.samples]

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
