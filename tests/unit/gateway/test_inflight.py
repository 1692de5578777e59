"""The registry of requests in flight: ids, lookup by the engine's answer id, and an
abort that ends a stream with REQUEST_ABORTED."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from modelfleet.gateway.asgi import SendGuard
from modelfleet.gateway.inflight import InFlightRegistry, answer_aborted, client_id, using
from modelfleet.gateway.trace import Trace


@pytest.fixture
async def registry() -> AsyncIterator[InFlightRegistry]:
    async with aiohttp.ClientSession() as session:
        yield InFlightRegistry(session)


def _scope(request_id: bytes | None = None) -> dict[str, Any]:
    return {"headers": [(b"x-request-id", request_id)] if request_id is not None else []}


@pytest.mark.parametrize(("header", "kept"), [
    (b"abc-123", True), (b"7f3c9e1a.retry:2@client/a+b=c", True), (b"x" * 128, True),
    (b"x" * 129, False), (b"has space", False), (b"-leading-dash", False), (b"", False),
    (b"caf\xc3\xa9", False), (b"line\nbreak", False),
])
def test_client_request_ids_are_kept_when_sane(header: bytes, kept: bool) -> None:
    assert client_id(_scope(header)) == (header.decode("latin-1") if kept else None)
    assert client_id(_scope()) is None


async def test_ids_are_unique_and_found_by_the_engines_answer_id(
    registry: InFlightRegistry,
) -> None:
    task = asyncio.current_task()
    assert task is not None
    first = registry.open(_scope(b"job-1"), task)
    second = registry.open(_scope(b"job-1"), task)  # the same id, still in flight
    fresh = registry.open(_scope(b"not sane"), task)
    assert first.id == "job-1" and second.id not in ("job-1", fresh.id)
    assert len(fresh.id) == 32
    for rid in ("job-1", "chatcmpl-job-1", "cmpl-job-1"):
        assert registry.find(rid) is first
    assert registry.find("chatcmpl-nope") is None
    for request in (fresh, second, first):
        registry.close(request)
    assert registry.ids() == []


async def test_the_current_request_collects_its_instances(registry: InFlightRegistry) -> None:
    assert using(None, None) is None  # type: ignore[arg-type]  # outside a request
    task = asyncio.current_task()
    assert task is not None
    request = registry.open(_scope(b"r1"), task)
    assert using("model", "instance") == "r1"  # type: ignore[arg-type]
    assert request.using == [("model", "instance")]
    registry.close(request)
    assert using(None, None) is None  # type: ignore[arg-type]


async def test_abort_ends_a_stream_with_request_aborted(registry: InFlightRegistry) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guard = SendGuard(send)
    streaming = asyncio.Event()

    async def serve() -> Trace:
        task = asyncio.current_task()
        assert task is not None
        request = registry.open(_scope(b"abc"), task)
        trace = Trace("m", "/v1/chat/completions")
        try:
            await guard({"type": "http.response.start", "status": 200, "headers": []})
            await guard({"type": "http.response.body", "body": b"data: {}\n\n",
                         "more_body": True})
            streaming.set()
            await asyncio.sleep(60)  # the engine, generating
        except asyncio.CancelledError:
            assert request.aborted
            await answer_aborted(request, guard, "/v1/chat/completions", trace)
        finally:
            registry.close(request)
        return trace

    task = asyncio.create_task(serve())
    await streaming.wait()
    assert await registry.abort("chatcmpl-abc")
    trace = await task  # the request ends normally: the client was told
    assert not task.cancelled() and task.cancelling() == 0
    last = sent[-1]
    assert last["more_body"] is False and guard.finished
    first_event, done = last["body"].split(b"\n\n")[:2]
    error = orjson.loads(first_event.removeprefix(b"data: "))["error"]
    assert (error["code"], done) == ("REQUEST_ABORTED", b"data: [DONE]")
    assert trace.record().status == 499
    assert registry.ids() == [] and not await registry.abort("abc")


async def test_abort_before_the_answer_began_sends_the_json_error(
    registry: InFlightRegistry,
) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guard = SendGuard(send)

    async def serve() -> None:
        task = asyncio.current_task()
        assert task is not None
        request = registry.open(_scope(b"queued"), task)
        try:
            await asyncio.sleep(60)  # waiting for admission
        except asyncio.CancelledError:
            await answer_aborted(request, guard, "/v1/completions", Trace("m", "x"))
        finally:
            registry.close(request)

    task = asyncio.create_task(serve())
    await asyncio.sleep(0.01)
    assert await registry.abort("queued")
    await task
    assert sent[0]["status"] == 499
    assert orjson.loads(sent[1]["body"])["error"]["code"] == "REQUEST_ABORTED"
