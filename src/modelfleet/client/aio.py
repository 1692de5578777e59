"""``AsyncClient``: the gateway's API for asyncio code (httpx)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Self, TypeVar

import httpx

from modelfleet.client.errors import translate_transport_errors
from modelfleet.client.ops import Done, Op, Sleep, Step, Stream, advance, checked
from modelfleet.client.surface import DEFAULT_TIMEOUT, DEFAULT_URL, Surface

T = TypeVar("T")
C = TypeVar("C")


class AsyncClient(Surface):
    """The asyncio client; every method of :class:`Surface` returns an awaitable, and
    the streaming ones an async iterator.

    Use it as an async context manager, or await :meth:`aclose`.
    """

    def __init__(self, base_url: str = DEFAULT_URL, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, *,
                 transport: httpx.AsyncBaseTransport | None = None):
        super().__init__(base_url, token, timeout)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, op: Op[T]) -> T:
        step = advance(op, None)
        while not isinstance(step, Done):
            step = advance(op, await self._perform(step))
        return step.value

    async def _perform(self, step: Step) -> Any:
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        with translate_transport_errors(self.base_url):
            return checked(await self._http.request(**step.httpx_args()))

    async def _stream(self, spec: Stream[C]) -> AsyncIterator[C]:
        reader = spec.reader()
        with translate_transport_errors(self.base_url):
            async with self._http.stream(**spec.call.httpx_args()) as resp:
                if resp.is_error:
                    await resp.aread()
                    checked(resp)
                async for line in resp.aiter_lines():
                    for item in reader.feed(line):
                        yield item
                    if reader.done:
                        return
