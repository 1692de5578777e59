import asyncio
import random
import time

import orjson
import pytest

from modelfleet.errors import QueueFullError, UnavailableError, render_error
from modelfleet.gateway.admission import Admission, Ticket
from modelfleet.gateway.gates import Gate, GateSpec
from modelfleet.settings import Limits, Settings


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def admit(admission: Admission, model: str = "m", priority: int = 0,
          **limits: int | None) -> asyncio.Task[Ticket]:
    return asyncio.create_task(
        admission.admit(model_name=model, limits=Limits(**limits), priority=priority)
    )


async def test_gates_run_queue_then_refuse_at_once_when_the_queue_is_full() -> None:
    admission = Admission()
    limits = {"max_concurrent": 2, "max_queue": 3}
    tasks = [admit(admission, **limits) for _ in range(5)]
    await settle()
    assert sum(t.done() for t in tasks) == 2
    assert admission.stats()["models"]["m"]["waiting"] == 3
    started = time.perf_counter()
    with pytest.raises(QueueFullError) as info:
        await admission.admit(model_name="m", limits=Limits(**limits), priority=0)
    assert time.perf_counter() - started < 1  # refused, not queued (the wait would be 300 s)
    exc = info.value
    assert exc.status == 503 and exc.code == "QUEUE_FULL" and exc.retry_after == 1
    status, headers, body = render_error(exc, "/v1/chat/completions")
    payload = orjson.loads(body)
    assert payload["queue_size"] == 3 and payload["max_queue_size"] == 3
    assert payload["error"]["code"] == "QUEUE_FULL" and (b"retry-after", b"1") in headers

    await tasks[0].result().release()
    await settle()
    assert sum(t.done() for t in tasks) == 3
    stats = admission.stats()["models"]["m"]
    assert stats | {"running": 2, "waiting": 2, "peak_running": 2, "rejected": 1} == stats
    for task in tasks[1:]:
        await (await task).release()
    assert admission.stats()["models"]["m"]["running"] == 0


async def test_gates_waiters_are_served_by_priority_then_arrival_through_the_fleet_gate() -> None:
    admission = Admission(max_concurrent=1, max_queue=10)
    holder = await admission.admit(model_name="first", limits=Limits(), priority=0)
    order: list[str] = []

    async def wait(name: str, priority: int) -> None:
        ticket = await admission.admit(model_name=name, limits=Limits(), priority=priority)
        order.append(name)
        await asyncio.sleep(0)
        await ticket.release()

    tasks = []
    for name, priority in [("low-a", 0), ("high-a", 5), ("mid", 1), ("high-b", 5), ("low-b", 0)]:
        tasks.append(asyncio.create_task(wait(name, priority)))
        await settle()
    assert admission.stats()["fleet"]["waiting"] == 5
    await holder.release()
    await asyncio.gather(*tasks)
    assert order == ["high-a", "high-b", "mid", "low-a", "low-b"]
    assert admission.stats()["fleet"]["running"] == 0


async def test_gates_cancelled_waiter_leaves_the_queue_and_never_takes_a_slot() -> None:
    admission = Admission()
    holder = await admission.admit(model_name="m", limits=Limits(max_concurrent=1), priority=0)
    doomed = admit(admission, max_concurrent=1)
    survivor = admit(admission, max_concurrent=1)
    await settle()
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert admission.stats()["models"]["m"]["waiting"] == 1
    await holder.release()
    ticket = await survivor
    assert admission.stats()["models"]["m"]["running"] == 1
    await ticket.release()
    stats = admission.stats()["models"]["m"]
    assert (stats["running"], stats["waiting"], stats["peak_running"]) == (0, 0, 1)


async def test_gates_cancel_in_the_iteration_of_the_grant_passes_the_slot_on() -> None:
    gate = Gate(GateSpec("g", 1, 10))
    await gate.acquire()
    granted_then_cancelled = asyncio.create_task(gate.acquire())
    next_in_line = asyncio.create_task(gate.acquire())
    await settle()
    gate.release()  # hands the slot to the first waiter...
    granted_then_cancelled.cancel()  # ...whose task is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await granted_then_cancelled
    await next_in_line
    assert (gate.running, gate.waiting) == (1, 0)
    gate.release()
    assert gate.running == 0

    lone = Gate(GateSpec("g", 1, 10))
    await lone.acquire()
    waiter = asyncio.create_task(lone.acquire())
    await settle()
    lone.release()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (lone.running, lone.waiting) == (0, 0)


async def test_gates_random_cancellations_leak_no_slot() -> None:
    rng = random.Random(7)
    admission = Admission(max_concurrent=3, max_queue=1000)
    limits = {"max_concurrent": 2, "max_queue": 1000}

    async def request(i: int) -> None:
        ticket = await admission.admit(model_name=f"m{i % 3}", limits=Limits(**limits),
                                       priority=i % 4)
        try:
            await asyncio.sleep(rng.random() * 0.002)
        finally:
            await ticket.release()

    tasks = [asyncio.create_task(request(i)) for i in range(200)]
    for _ in range(60):
        await asyncio.sleep(rng.random() * 0.001)
        rng.choice(tasks).cancel()
        await asyncio.sleep(0)  # cancels landing right after grants, too
        rng.choice(tasks).cancel()
    async with asyncio.timeout(10):  # a leaked slot would strand the rest forever
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert any(isinstance(r, asyncio.CancelledError) for r in results)
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
    stats = admission.stats()
    for gate in [stats["fleet"], *stats["models"].values()]:
        assert (gate["running"], gate["waiting"]) == (0, 0)
    assert stats["fleet"]["peak_running"] == 3


async def test_gates_queue_timeout_is_a_503_queue_timeout() -> None:
    admission = Admission(queue_timeout_s=0.05)
    holder = await admission.admit(model_name="m", limits=Limits(max_concurrent=1), priority=0)
    started = time.perf_counter()
    with pytest.raises(UnavailableError) as info:
        await admission.admit(model_name="m", limits=Limits(max_concurrent=1), priority=0)
    assert 0.04 < time.perf_counter() - started < 1
    assert info.value.status == 503 and info.value.code == "QUEUE_TIMEOUT"
    stats = admission.stats()["models"]["m"]
    assert (stats["running"], stats["waiting"], stats["timed_out"]) == (1, 0, 1)
    await holder.release()


async def test_gates_max_queue_zero_refuses_at_once_and_default_is_four_times() -> None:
    admission = Admission()
    async with await admission.admit(model_name="m", limits=Limits(max_concurrent=1, max_queue=0),
                                     priority=0):
        with pytest.raises(QueueFullError) as info:
            await admission.admit(model_name="m", limits=Limits(max_concurrent=1, max_queue=0),
                                  priority=0)
        assert info.value.extra == {"queue_size": 0, "max_queue_size": 0}
    assert admission.stats()["models"]["m"]["running"] == 0

    tasks = [admit(admission, "d", max_concurrent=2) for _ in range(10)]
    await settle()
    assert admission.stats()["models"]["d"]["max_queue"] == 8
    with pytest.raises(QueueFullError):
        await admission.admit(model_name="d", limits=Limits(max_concurrent=2), priority=0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_gates_refused_fleet_slot_gives_the_model_slot_back() -> None:
    admission = Admission(max_concurrent=1, max_queue=0)
    holder = await admission.admit(model_name="a", limits=Limits(), priority=0)
    with pytest.raises(QueueFullError):
        await admission.admit(model_name="b", limits=Limits(max_concurrent=1), priority=0)
    stats = admission.stats()
    assert stats["models"]["b"]["running"] == 0 and stats["fleet"]["rejected"] == 1
    await holder.release()


async def test_gates_lifting_a_limit_admits_the_waiters() -> None:
    admission = Admission()
    holder = await admission.admit(model_name="m", limits=Limits(max_concurrent=1), priority=0)
    waiters = [admit(admission, max_concurrent=1) for _ in range(3)]
    await settle()
    ticket = await admission.admit(model_name="m", limits=Limits(), priority=0)
    tickets = await asyncio.gather(*waiters)
    assert admission.stats()["models"]["m"]["running"] == 5
    for t in [holder, ticket, *tickets]:
        await t.release()
    assert admission.stats()["models"]["m"]["running"] == 0


async def test_gates_unlimited_requests_take_no_gate_and_settings_build_the_fleet_gate() -> None:
    admission = Admission()
    ticket = await admission.admit(model_name="m", limits=Limits(), priority=0)
    assert ticket.queued_s == 0.0
    await ticket.release()
    assert admission.stats() == {"backend": "in_process", "rate_limited": 0, "fleet": None,
                                 "models": {}}

    settings = Settings(server={"max_concurrent_requests": 4})
    admission = Admission.from_settings(settings)
    async with await admission.admit(model_name="m", limits=Limits(), priority=0):
        fleet = admission.stats()["fleet"]
        assert fleet["running"] == 1 and fleet["max_queue"] == 16
    assert admission.queue_timeout_s == 300
    await admission.close()


async def test_gates_queued_time_is_reported_on_the_ticket() -> None:
    admission = Admission()
    holder = await admission.admit(model_name="m", limits=Limits(max_concurrent=1), priority=0)
    waiter = admit(admission, max_concurrent=1)
    await asyncio.sleep(0.03)
    await holder.release()
    ticket = await waiter
    assert 0.02 < ticket.queued_s < 1
    await ticket.release()
