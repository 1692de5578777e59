"""Per-API-key rate limits: requests and tokens per sliding window (a minute), in this process.

A key's window is a deque of one-second buckets ``[second, requests, tokens]`` with
running totals; buckets that left the window fall off the front as time moves, so a
check costs amortised O(1). ``check`` refuses when the requests in the window reach
``rpm`` or the tokens reach ``tpm`` (tokens are known only after a response, so the
limit is "used so far", as LiteLLM counts it), and otherwise counts the request.
``record`` adds a response's tokens. The Redis backend keeps the same buckets in a hash
(see ``redis_scripts.RATE_CHECK``) and raises the same error through ``rate_limited``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from modelfleet.errors import RateLimitedError

WINDOW_S = 60


def rate_limited(which: str, limit: int, wait_s: float, window_s: int) -> RateLimitedError:
    """The 429 for limit ``which`` ("rpm" or "tpm"), retryable in ``wait_s`` seconds."""
    what = "requests" if which == "rpm" else "tokens"
    per = "minute" if window_s == 60 else f"{window_s} s"
    return RateLimitedError(
        f"rate limit exceeded for this API key: {limit} {what} per {per} ({which})",
        details={"limit": which, "limit_value": limit, "window_s": window_s},
        retry_after=max(1, math.ceil(wait_s)),
    )


class _Window:
    __slots__ = ("buckets", "requests", "tokens")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()
        self.requests = 0
        self.tokens = 0

    def expire(self, oldest: int) -> None:
        """Drop the buckets older than second ``oldest``."""
        buckets = self.buckets
        while buckets and buckets[0][0] < oldest:
            _, requests, tokens = buckets.popleft()
            self.requests -= requests
            self.tokens -= tokens

    def bucket(self, second: int) -> list[int]:
        if not self.buckets or self.buckets[-1][0] != second:
            self.buckets.append([second, 0, 0])
        return self.buckets[-1]

    def wait_s(self, field: int, total: int, limit: int, now: float, window_s: int) -> float:
        """Seconds until enough old buckets leave for ``total`` to drop below ``limit``."""
        for bucket in self.buckets:
            total -= bucket[field]
            if total < limit:
                return bucket[0] + window_s - now
        return float(window_s)  # a limit of 0: nothing ever frees enough


class RateWindow:
    """Sliding windows of requests and tokens per key; ``clock`` is injectable for tests."""

    def __init__(self, window_s: int = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self.refused = 0
        self._windows: dict[str, _Window] = {}
        self._swept_at = clock()

    def check(self, key_id: str, rpm: int | None, tpm: int | None) -> None:
        """Count one request for ``key_id``, or raise RateLimitedError when a limit is reached."""
        now = self.clock()
        second = int(now)
        window = self._windows.get(key_id)
        if window is None:
            window = self._windows[key_id] = _Window()
        else:
            window.expire(second - self.window_s + 1)
        if tpm is not None and window.tokens >= tpm:
            self.refused += 1
            wait = window.wait_s(2, window.tokens, tpm, now, self.window_s)
            raise rate_limited("tpm", tpm, wait, self.window_s)
        if rpm is not None and window.requests >= rpm:
            self.refused += 1
            wait = window.wait_s(1, window.requests, rpm, now, self.window_s)
            raise rate_limited("rpm", rpm, wait, self.window_s)
        window.bucket(second)[1] += 1
        window.requests += 1
        if now - self._swept_at >= self.window_s:
            self._sweep(second)

    def record(self, key_id: str, tokens: int) -> None:
        """Add a response's ``tokens`` to the key's window."""
        if tokens <= 0:
            return
        second = int(self.clock())
        window = self._windows.get(key_id)
        if window is None:
            window = self._windows[key_id] = _Window()
        window.bucket(second)[2] += tokens
        window.tokens += tokens

    def usage(self, key_id: str) -> dict[str, int]:
        """Requests and tokens of ``key_id`` in the current window."""
        window = self._windows.get(key_id)
        if window is None:
            return {"requests": 0, "tokens": 0}
        window.expire(int(self.clock()) - self.window_s + 1)
        return {"requests": window.requests, "tokens": window.tokens}

    def stats(self) -> dict[str, Any]:
        return {"keys": len(self._windows), "refused": self.refused}

    def _sweep(self, second: int) -> None:
        """Forget keys whose window emptied, so idle keys cost no memory."""
        self._swept_at = self.clock()
        oldest = second - self.window_s + 1
        idle = [k for k, w in self._windows.items() if not w.buckets or w.buckets[-1][0] < oldest]
        for key_id in idle:
            del self._windows[key_id]
