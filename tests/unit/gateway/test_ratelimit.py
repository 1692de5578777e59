import pytest

from modelfleet.errors import RateLimitedError, render_error
from modelfleet.gateway.admission import Admission
from modelfleet.gateway.gates import InProcessBackend
from modelfleet.gateway.ratelimit import RateWindow
from modelfleet.settings import Limits


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def refused(window: RateWindow, key: str, rpm: int | None, tpm: int | None) -> RateLimitedError:
    with pytest.raises(RateLimitedError) as info:
        window.check(key, rpm, tpm)
    return info.value


def test_ratelimit_rpm_refuses_the_request_past_the_limit() -> None:
    window = RateWindow(clock=Clock())
    for _ in range(5):
        window.check("k", 5, None)
    exc = refused(window, "k", 5, None)
    assert exc.status == 429 and exc.code == "RATE_LIMITED"
    assert exc.retry_after is not None and 0 < exc.retry_after <= 60
    assert "5 requests per minute" in exc.message and "rpm" in exc.message
    assert exc.details == {"limit": "rpm", "limit_value": 5, "window_s": 60}
    assert window.usage("k") == {"requests": 5, "tokens": 0}  # a refusal does not count


def test_ratelimit_rpm_window_slides_and_retry_after_names_when() -> None:
    clock = Clock(1000.0)
    window = RateWindow(clock=clock)
    for second in range(5):  # one request at 1000, 1001, ... 1004
        clock.now = 1000.0 + second
        window.check("k", 5, None)
    clock.now = 1010.5
    assert refused(window, "k", 5, None).retry_after == 50  # the 1000 bucket leaves at 1060
    clock.now = 1059.9
    refused(window, "k", 5, None)
    clock.now = 1060.0
    window.check("k", 5, None)
    refused(window, "k", 5, None)


def test_ratelimit_tpm_counts_recorded_tokens() -> None:
    clock = Clock()
    window = RateWindow(clock=clock)
    window.check("k", None, 100)
    window.record("k", 99)
    window.check("k", None, 100)
    window.record("k", 1)
    exc = refused(window, "k", None, 100)
    assert "100 tokens per minute" in exc.message and exc.details is not None
    assert exc.details["limit"] == "tpm"
    clock.now += 60
    window.check("k", None, 100)


def test_ratelimit_keys_are_independent_and_none_is_unlimited() -> None:
    window = RateWindow(clock=Clock())
    window.check("a", 1, None)
    refused(window, "a", 1, None)
    window.check("b", 1, None)
    for _ in range(1000):
        window.check("c", None, None)
    assert window.usage("c")["requests"] == 1000


def test_ratelimit_forgets_idle_keys() -> None:
    clock = Clock()
    window = RateWindow(window_s=2, clock=clock)
    window.check("old", 1, None)
    clock.now += 5
    window.check("new", 1, None)
    assert window.stats() == {"keys": 1, "refused": 0}


async def test_ratelimit_through_admission_records_tokens_on_release() -> None:
    rates = RateWindow(clock=Clock())
    admission = Admission(InProcessBackend(rates=rates))
    ticket = await admission.admit(model_name="m", limits=Limits(), priority=0,
                                   key_id="k", rpm=None, tpm=50)
    await ticket.release(tokens=50)
    await ticket.release(tokens=50)  # idempotent: counted once
    with pytest.raises(RateLimitedError) as info:
        await admission.admit(model_name="m", limits=Limits(), priority=0, key_id="k", tpm=50)
    status, headers, _ = render_error(info.value, "/v1/chat/completions")
    assert status == 429 and (b"retry-after", b"60") in headers
    assert admission.stats()["rate_limited"] == 1
    # A key without a TPM limit needs no token bookkeeping.
    ticket = await admission.admit(model_name="m", limits=Limits(), priority=0, key_id="x", rpm=9)
    await ticket.release(tokens=1000)
    assert rates.usage("x") == {"requests": 1, "tokens": 0}
