"""A generation request in flight, and how its prefill is paid for."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from modelfleet.engines.sim.prompt import Prompt


@dataclass(eq=False)
class Job:
    """One generation request from arrival to its last token."""

    rid: str  # the response id, chatcmpl-BASE or cmpl-BASE
    base_id: str  # X-Request-Id, the body's request_id, or random (as in vLLM)
    chat: bool
    prompt: Prompt
    max_tokens: int
    arrival: float = field(default_factory=time.monotonic)
    aborted: asyncio.Event = field(default_factory=asyncio.Event)
    waiter: asyncio.Future[bool] | None = None  # while queued
    running: bool = False  # holds a slot
    produced: int = 0
    first_token_at: float | None = None
    last_token_at: float | None = None
    finished: bool = False  # answered (or answering its last chunk): no longer abortable


@dataclass(frozen=True)
class Plan:
    """How a prompt's prefill is paid for: cached + transferred + computed == prompt."""

    cached: int  # tokens found in the local prefix cache
    transferred: int  # tokens whose KV came from a remote prefill (decode role)
    computed: int  # tokens prefilled here
    encoded: int  # images run through the encoder here
    hashes: list[bytes]
