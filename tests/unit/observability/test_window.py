"""The sliding window keeps the last ``span_s`` seconds, at most ``cap`` samples."""

import random
from collections import deque

from modelfleet.observability.window import Window


def test_window_keeps_the_newest_samples_within_its_span_and_cap() -> None:
    """Against the plain model of it: a bounded deque of (time, value), the old dropped."""
    rng = random.Random(1)
    for _ in range(200):
        cap, span = rng.choice([1, 2, 5, 16, 100]), rng.choice([0.5, 1.0, 5.0, 100.0])
        window, model = Window(span, cap), deque[tuple[float, float]](maxlen=cap)
        now = 0.0
        for _ in range(rng.randint(0, 600)):
            now += rng.random() * 0.2
            value = rng.random()
            window.add(value, now)
            model.append((now, value))
            if rng.random() < 0.1:
                while model and model[0][0] < now - span:
                    model.popleft()
                assert window.values(now) == [v for _, v in model]
        assert len(window._at) <= 2 * cap + 1  # what left the window is cut off


def test_window_summary() -> None:
    window = Window(span_s=10)
    assert window.summary(0)["count"] == 0 and window.summary(0)["p50"] is None
    for i in range(1, 101):
        window.add(i / 100, now=i / 10)
    summary = window.summary(10.0)
    assert summary["count"] == 100 and summary["p50"] == 0.5 and summary["max"] == 1.0
    assert window.summary(15.0)["count"] == 51  # samples older than 10 s have left
