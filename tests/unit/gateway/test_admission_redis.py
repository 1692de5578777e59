"""The Redis admission backend against a real Redis (``MODELFLEET_TEST_REDIS_URL``, default
``redis://127.0.0.1:6379/0``), with two ``Admission`` objects standing for two gateways.

An unreachable Redis FAILS these tests: CI starts one, and shared limits that were
never run against Redis are not tested. Each test uses its own key prefix and deletes
its keys afterwards.
"""

import asyncio
import logging
import os
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from modelfleet.errors import QueueFullError, RateLimitedError, UnavailableError
from modelfleet.gateway.admission import Admission, Ticket
from modelfleet.gateway.redis_admission import RedisBackend
from modelfleet.settings import Limits, Settings
from tests.helpers import free_port

REDIS_URL = os.environ.get("MODELFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

Gateway = Callable[..., Admission]


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({type(exc).__name__}: {exc}). Start it, "
            "or point MODELFLEET_TEST_REDIS_URL at one; the Redis admission tests never skip.",
            pytrace=False,
        )
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    prefix = f"mf-test-{secrets.token_hex(6)}:"
    yield prefix
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def gateway(prefix: str) -> AsyncIterator[Gateway]:
    """Builds gateways sharing ``prefix``; each has its own Redis connections."""
    made: list[Admission] = []

    def make(*, window_s: int = 60, lease_ttl_s: float = 5.0, **gates: float | int) -> Admission:
        backend = RedisBackend(REDIS_URL, prefix=prefix, window_s=window_s,
                               lease_ttl_s=lease_ttl_s, poll_s=0.05)
        made.append(Admission(backend, **gates))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for admission in made:
        await admission.close()


def admit(admission: Admission, model: str = "m", priority: int = 0,
          **limits: int | None) -> asyncio.Task[Ticket]:
    return asyncio.create_task(
        admission.admit(model_name=model, limits=Limits(**limits), priority=priority)
    )


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def waiting(admission: Admission, model: str = "m") -> int:
    return int(admission.stats()["models"].get(model, {}).get("waiting", 0))


async def queued(redis: Redis, prefix: str, gate: str) -> int:
    return int(await redis.zcard(f"{prefix}gate:{gate}:queue"))


async def running(redis: Redis, prefix: str, gate: str) -> int:
    return int(await redis.zcard(f"{prefix}gate:{gate}:leases"))


async def test_redis_rpm_is_shared_between_gateways_and_the_window_slides(
    gateway: Gateway,
) -> None:
    a, b = gateway(window_s=2), gateway(window_s=2)
    for admission in (a, b, a, b, a):
        await (await admission.admit(model_name="m", limits=Limits(), priority=0,
                                     key_id="k", rpm=5)).release()
    with pytest.raises(RateLimitedError) as info:
        await b.admit(model_name="m", limits=Limits(), priority=0, key_id="k", rpm=5)
    assert info.value.code == "RATE_LIMITED" and info.value.details is not None
    assert info.value.details["limit"] == "rpm"
    retry_after = info.value.retry_after
    assert retry_after is not None and 0 < retry_after <= 2
    await b.admit(model_name="m", limits=Limits(), priority=0, key_id="other", rpm=5)
    await asyncio.sleep(retry_after)
    await b.admit(model_name="m", limits=Limits(), priority=0, key_id="k", rpm=5)
    await a.admit(model_name="m", limits=Limits(), priority=0, key_id="k", rpm=None)


async def test_redis_tpm_counts_tokens_recorded_by_any_gateway(gateway: Gateway) -> None:
    a, b = gateway(), gateway()
    ticket = await a.admit(model_name="m", limits=Limits(), priority=0, key_id="k", tpm=100)
    await ticket.release(tokens=100)
    with pytest.raises(RateLimitedError) as info:
        await b.admit(model_name="m", limits=Limits(), priority=0, key_id="k", tpm=100)
    assert info.value.details is not None and info.value.details["limit"] == "tpm"
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 60
    await b.admit(model_name="m", limits=Limits(), priority=0, key_id="k2", tpm=100)


async def test_redis_concurrency_and_queue_are_global(
    gateway: Gateway, redis: Redis, prefix: str
) -> None:
    a, b = gateway(), gateway()
    limits = {"max_concurrent": 2, "max_queue": 3}
    first = await a.admit(model_name="m", limits=Limits(**limits), priority=0)
    await b.admit(model_name="m", limits=Limits(**limits), priority=0)
    waiters = []
    for admission in (a, b, a):
        waiters.append(admit(admission, **limits))
        await until(lambda: waiting(a) + waiting(b) == len(waiters))
    assert await queued(redis, prefix, "model:m") == 3
    started = time.perf_counter()
    with pytest.raises(QueueFullError) as info:
        await b.admit(model_name="m", limits=Limits(**limits), priority=0)
    assert time.perf_counter() - started < 1  # refused, not queued (the wait would be 300 s)
    assert info.value.extra == {"queue_size": 3, "max_queue_size": 3}
    assert b.stats()["models"]["m"]["rejected"] == 1

    await first.release()
    ticket = await asyncio.wait_for(waiters[0], 2)  # the oldest, served through pub/sub
    assert not any(w.done() for w in waiters[1:])
    assert await running(redis, prefix, "model:m") == 2
    await ticket.release()
    for waiter in waiters[1:]:
        waiter.cancel()
    await asyncio.gather(*waiters[1:], return_exceptions=True)
    assert await queued(redis, prefix, "model:m") == 0


async def test_redis_priority_orders_waiters_of_both_gateways(
    gateway: Gateway, redis: Redis, prefix: str
) -> None:
    a = gateway(max_concurrent=1, max_queue=10)
    b = gateway(max_concurrent=1, max_queue=10)
    holder = await a.admit(model_name="x", limits=Limits(), priority=0)
    order: list[str] = []

    async def wait(admission: Admission, name: str, priority: int) -> None:
        ticket = await admission.admit(model_name=name, limits=Limits(), priority=priority)
        order.append(name)
        await ticket.release()

    tasks = []
    plan = [(a, "low-a", 0), (b, "high-a", 5), (a, "mid", 1), (b, "high-b", 5), (b, "low-b", 0)]
    for admission, name, priority in plan:
        tasks.append(asyncio.create_task(wait(admission, name, priority)))
        count = len(tasks)
        deadline = time.monotonic() + 5
        while await queued(redis, prefix, "fleet") < count:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    await holder.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == ["high-a", "high-b", "mid", "low-a", "low-b"]
    assert await running(redis, prefix, "fleet") == 0


async def test_redis_lease_of_a_dead_gateway_lapses_and_a_live_one_is_renewed(
    gateway: Gateway, redis: Redis, prefix: str
) -> None:
    doomed, survivor = gateway(lease_ttl_s=1), gateway(lease_ttl_s=1)
    await doomed.admit(model_name="m", limits=Limits(max_concurrent=1), priority=0)
    waiter = admit(survivor, max_concurrent=1)
    await asyncio.sleep(1.6)  # past the TTL: the holder renews, so the waiter still waits
    assert not waiter.done()
    await doomed.close()  # dies holding its slot: no release, no more renewals
    started = time.monotonic()
    ticket = await asyncio.wait_for(waiter, 3)
    assert 0.2 < time.monotonic() - started < 2
    await ticket.release()
    assert await running(redis, prefix, "model:m") == 0


async def test_redis_cancelled_waiters_leave_and_leak_no_lease(
    gateway: Gateway, redis: Redis, prefix: str
) -> None:
    a, b = gateway(), gateway()
    holder = await a.admit(model_name="m", limits=Limits(max_concurrent=1), priority=0)
    waiter = admit(b, max_concurrent=1)
    await until(lambda: waiting(b) == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert b.stats()["models"]["m"]["waiting"] == 0
    assert await queued(redis, prefix, "model:m") == 0
    await holder.release()
    assert await running(redis, prefix, "model:m") == 0

    rng = random.Random(3)
    limits = Limits(max_concurrent=2, max_queue=100)

    async def request(admission: Admission) -> None:
        async with await admission.admit(model_name="m", limits=limits, priority=0):
            await asyncio.sleep(rng.random() * 0.01)

    tasks = [asyncio.create_task(request(rng.choice((a, b)))) for _ in range(40)]
    for _ in range(15):
        await asyncio.sleep(rng.random() * 0.01)
        rng.choice(tasks).cancel()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
    assert await running(redis, prefix, "model:m") == 0
    assert await queued(redis, prefix, "model:m") == 0
    for admission in (a, b):
        stats = admission.stats()["models"]["m"]
        assert (stats["running"], stats["waiting"]) == (0, 0)


async def test_redis_queue_timeout(gateway: Gateway, redis: Redis, prefix: str) -> None:
    a, b = gateway(), gateway(queue_timeout_s=0.2)
    holder = await a.admit(model_name="m", limits=Limits(max_concurrent=1), priority=0)
    with pytest.raises(UnavailableError) as info:
        await b.admit(model_name="m", limits=Limits(max_concurrent=1), priority=0)
    assert info.value.code == "QUEUE_TIMEOUT"
    assert await queued(redis, prefix, "model:m") == 0
    await holder.release()


async def test_redis_unreachable_falls_back_to_this_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    admission = Admission.from_settings(settings, retry_s=60)
    assert admission.stats()["backend"] == "redis"
    with caplog.at_level(logging.WARNING, logger="modelfleet.gateway.admission"):
        for _ in range(2):
            ticket = await admission.admit(model_name="m", limits=Limits(max_concurrent=1),
                                           priority=0, key_id="k", rpm=2, tpm=10)
            await ticket.release(tokens=1)
        with pytest.raises(RateLimitedError):  # the local window still enforces the limit
            await admission.admit(model_name="m", limits=Limits(), priority=0, key_id="k", rpm=2)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis at redis://127.0.0.1" in warnings[0].getMessage()
    assert admission.stats()["models"]["m"]["fallback"]["running"] == 0
    await admission.close()
