"""The raw-ASGI helpers of the hot path."""

import asyncio
from typing import Any

from modelfleet.gateway.asgi import DisconnectWatch, SendGuard


async def _sink(message: Any) -> None:
    return None


async def test_disconnect_watch_cancels_the_request_when_the_client_leaves() -> None:
    left = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def request() -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(request())
    watch = DisconnectWatch(receive, SendGuard(_sink), task, delay=0.01)
    left.set()
    await asyncio.wait([task], timeout=2)
    assert task.cancelled() and watch.fired
    watch.cancel()


async def test_disconnect_watch_ignores_a_client_that_leaves_after_the_response() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    send = SendGuard(_sink)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})
    task = asyncio.create_task(asyncio.sleep(0.2))
    watch = DisconnectWatch(receive, send, task, delay=0)
    await task
    assert not watch.fired
    watch.cancel()


async def test_disconnect_watch_of_a_short_request_never_waits_on_receive() -> None:
    """A request over before the delay costs a timer, not a task reading ``receive``."""
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"type": "http.disconnect"}

    watch = DisconnectWatch(receive, SendGuard(_sink), asyncio.create_task(asyncio.sleep(0)),
                            delay=0.05)
    watch.cancel()
    await asyncio.sleep(0.1)
    assert calls == 0 and not watch.fired
