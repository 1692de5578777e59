"""Server-sent events, read line by line as they arrive, turned into typed items.

A decoder says how one event's ``data`` becomes an item and whether the stream is
over; :class:`SSEReader` does the framing (``data:`` lines up to a blank line, comments
such as ``: keep-alive`` skipped). Both clients feed it the lines httpx gives them, so
the parsing is the same for sync and async code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from modelfleet.client.errors import MalformedResponseError, error_from
from modelfleet.client.types import LogEvent, validated

C = TypeVar("C")
M = TypeVar("M", bound=BaseModel)

# One event's data → (the item or None, whether the stream is over).
Decoder = Callable[[str], tuple[C | None, bool]]


class SSEReader(Generic[C]):
    """Feed it lines (without their newline); it hands back the items completed."""

    def __init__(self, decode: Decoder[C]):
        self._decode = decode
        self._data: list[str] = []
        self.done = False

    def feed(self, line: str) -> list[C]:
        if line:
            field, _, value = line.partition(":")
            if field == "data":
                self._data.append(value[1:] if value.startswith(" ") else value)
            return []  # comments, event names and ids carry nothing these streams use
        if not self._data:
            return []
        data, self._data = "\n".join(self._data), []
        item, self.done = self._decode(data)
        return [] if item is None else [item]


def load_json(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise MalformedResponseError(f"stream event is not JSON: {data[:200]!r}") from None


def completion_decoder(model: type[M]) -> Decoder[M]:
    """OpenAI-style chunks ending with ``[DONE]``; an ``error`` event is raised."""

    def decode(data: str) -> tuple[M | None, bool]:
        if data.strip() == "[DONE]":
            return None, True
        payload = load_json(data)
        if isinstance(payload, dict) and "error" in payload:
            raise error_from(None, payload)
        return validated(model, payload), False

    return decode


def log_event(data: str) -> tuple[LogEvent | None, bool]:
    """Seed 003's log events; ``stream_end`` and ``error`` are the last ones."""
    event = validated(LogEvent, load_json(data))
    return event, event.final
