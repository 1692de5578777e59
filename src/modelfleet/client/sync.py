"""``Client``: the gateway's API over blocking HTTP (httpx)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Self, TypeVar

import httpx

from modelfleet.client.errors import translate_transport_errors
from modelfleet.client.ops import Done, Op, Sleep, Step, Stream, advance, checked
from modelfleet.client.surface import DEFAULT_TIMEOUT, DEFAULT_URL, Surface

T = TypeVar("T")
C = TypeVar("C")


class Client(Surface):
    """The blocking client; every method of :class:`Surface` returns its result.

    Use it as a context manager, or call :meth:`close`, to release its connections.
    ``transport`` replaces httpx's network transport (tests, proxies, UDS).
    """

    def __init__(self, base_url: str = DEFAULT_URL, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, *,
                 transport: httpx.BaseTransport | None = None):
        super().__init__(base_url, token, timeout)
        self._http = httpx.Client(transport=transport, **self._http_options())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, op: Op[T]) -> T:
        step = advance(op, None)
        while not isinstance(step, Done):
            step = advance(op, self._perform(step))
        return step.value

    def _perform(self, step: Step) -> Any:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        with translate_transport_errors(self.base_url):
            return checked(self._http.request(**step.httpx_args()))

    def _stream(self, spec: Stream[C]) -> Iterator[C]:
        reader = spec.reader()
        with translate_transport_errors(self.base_url), \
                self._http.stream(**spec.call.httpx_args()) as resp:
            if resp.is_error:
                resp.read()
                checked(resp)
            for line in resp.iter_lines():
                yield from reader.feed(line)
                if reader.done:
                    return
