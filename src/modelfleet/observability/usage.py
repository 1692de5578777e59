"""Per-model request and token counters, fed by the relay after each request."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from modelfleet.errors import FleetError

RATE_WINDOW_S = 60


@dataclass
class ModelUsage:
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    aborted: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    timed: int = 0  # requests with a response time
    seconds_total: float = 0.0
    seconds_max: float = 0.0
    seconds_min: float | None = None
    # Requests finished in each of the last RATE_WINDOW_S seconds: (second, count) slots.
    _slots: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)] * RATE_WINDOW_S)

    def count_now(self, now: float | None = None) -> None:
        second = int(time.time() if now is None else now)
        at, n = self._slots[second % RATE_WINDOW_S]
        self._slots[second % RATE_WINDOW_S] = (second, n + 1 if at == second else 1)

    def requests_per_second(self, now: float | None = None) -> float:
        """Requests finished per second over the last RATE_WINDOW_S seconds."""
        second = int(time.time() if now is None else now)
        recent = sum(n for at, n in self._slots if second - at < RATE_WINDOW_S)
        return recent / RATE_WINDOW_S

    def stats(self) -> dict[str, float | int | None]:
        """Seed 002's ``performance_stats`` with the counts behind them."""
        counted = self.succeeded + self.failed
        return {
            "avg_response_time": round(self.seconds_total / self.timed, 4) if self.timed else None,
            "max_response_time": round(self.seconds_max, 4) if self.timed else None,
            "min_response_time": round(self.seconds_min, 4) if self.seconds_min else None,
            "requests_per_second": round(self.requests_per_second(), 3),
            "error_rate": round(self.failed / counted, 4) if counted else None,
            "requests": self.requests,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "aborted": self.aborted,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class UsageBook:
    def __init__(self) -> None:
        self.models: dict[str, ModelUsage] = {}

    def of(self, model: str) -> ModelUsage:
        usage = self.models.get(model)
        if usage is None:
            usage = self.models[model] = ModelUsage()
        return usage

    def record(
        self, model: str, status: int, usage: dict | None, error: FleetError | None,
        seconds: float | None = None,
    ) -> None:
        book = self.of(model)
        book.requests += 1
        book.count_now()
        if seconds is not None:
            book.timed += 1
            book.seconds_total += seconds
            book.seconds_max = max(book.seconds_max, seconds)
            book.seconds_min = seconds if book.seconds_min is None else min(book.seconds_min,
                                                                            seconds)
        if status == 499:
            book.aborted += 1
        elif error is not None or status >= 400:
            book.failed += 1
            book.errors[error.code if error is not None else f"HTTP_{status}"] += 1
        else:
            book.succeeded += 1
        if usage:
            book.prompt_tokens += _int(usage.get("prompt_tokens"))
            book.completion_tokens += _int(usage.get("completion_tokens"))
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
            book.cached_tokens += _int(cached if cached is not None else usage.get("cache_n"))


def _int(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0
