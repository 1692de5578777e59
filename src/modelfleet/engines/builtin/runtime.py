"""The engine's worker pool: requests run off the event loop, stream events back, can be
cancelled, and are counted.

A request is one API call; it runs as one or more *jobs* (one per prompt) on a
``ThreadPoolExecutor`` of ``--max-concurrency`` workers. A job is a plain function of
the request's :class:`RequestHandle`: it checks ``handle.cancel`` (a
``threading.Event``) between model steps and reports through ``handle.emit``, which hops
onto the event loop with ``loop.call_soon_threadsafe`` into the request's
``asyncio.Queue``. The asyncio side reads :meth:`RequestHandle.events` until the last job
is done; a client that goes away calls :meth:`RequestHandle.abort`.

:class:`Stats` counts requests as waiting (submitted, no job started), running,
completed or aborted, and the prompt and generated tokens, for ``/stats`` and
``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from modelfleet.errors import FleetError, UnavailableError

log = logging.getLogger("modelfleet.engines.builtin")


@dataclass(frozen=True)
class TextDelta:
    """New output text of choice ``index``."""

    index: int
    text: str


@dataclass(frozen=True)
class ChoiceFinished:
    """Choice ``index`` is over: ``reason`` is stop, length or abort; ``stop_reason`` is the
    stop string or stop token id that ended it (None for end-of-sequence or length)."""

    index: int
    reason: str
    stop_reason: str | int | None
    tokens: int


@dataclass(frozen=True)
class JobResult:
    """What a job returned (pooling jobs return their result instead of streaming)."""

    value: Any


@dataclass(frozen=True)
class JobFailed:
    """A job raised; the exception, to be rendered by the route."""

    error: BaseException


Event = TextDelta | ChoiceFinished | JobResult | JobFailed


class JobContext(Protocol):
    """What a job sees of its request (a :class:`RequestHandle`, or a test double)."""

    cancel: threading.Event

    def emit(self, event: Event) -> None: ...

    def count_tokens(self, k: int = 1) -> None: ...


Job = Callable[["RequestHandle"], Any]
_DONE = object()


class Stats:
    """Thread-safe request and token counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting = 0
        self.running = 0
        self.completed = 0
        self.aborted = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0

    def snapshot(self) -> dict[str, int]:
        """The ``GET /stats`` object."""
        with self.lock:
            return {
                "running": self.running,
                "waiting": self.waiting,
                "completed": self.completed,
                "aborted": self.aborted,
                "prompt_tokens_total": self.prompt_tokens_total,
                "generation_tokens_total": self.generation_tokens_total,
            }

    def prometheus(self, model_name: str) -> str:
        """Prometheus text exposition (format 0.0.4) under vLLM's metric names, so
        dashboards and the gateway's scraper read this engine like a vLLM one."""
        s = self.snapshot()
        label = '{model_name="' + model_name.replace("\\", "\\\\").replace('"', '\\"') + '"}'
        rows = [
            ("vllm:num_requests_running", "gauge", "Requests being decoded.", s["running"]),
            ("vllm:num_requests_waiting", "gauge", "Requests waiting for a worker.", s["waiting"]),
            (
                "vllm:prompt_tokens_total",
                "counter",
                "Prompt tokens processed.",
                s["prompt_tokens_total"],
            ),
            (
                "vllm:generation_tokens_total",
                "counter",
                "Tokens generated.",
                s["generation_tokens_total"],
            ),
            (
                "vllm:request_success_total",
                "counter",
                "Requests that ran to completion.",
                s["completed"],
            ),
            (
                "modelfleet_engine_requests_aborted_total",
                "counter",
                "Requests cancelled before completion (client gone, shutdown).",
                s["aborted"],
            ),
        ]
        lines = []
        for name, kind, doc, value in rows:
            lines += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}", f"{name}{label} {value}"]
        return "\n".join(lines) + "\n"


class RequestHandle:
    """One request as the engine sees it: cancel flag, event queue and counters.

    ``emit``/``count_tokens`` are called from worker threads; ``events``/``abort`` from
    the event loop that submitted the request.
    """

    def __init__(self, request_id: str, engine: Engine, jobs: int, prompt_tokens: int):
        self.id = request_id
        self.cancel = threading.Event()
        self.prompt_tokens = prompt_tokens
        self.tokens = 0  # generated so far, all choices
        self._engine = engine
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._jobs = jobs
        self._started = 0
        self._done = 0
        self._created = time.monotonic()
        self.finished = False  # every job has returned

    def emit(self, event: Event | object) -> None:
        """Hand an event to the asyncio side (thread-safe, never blocks)."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:
            # The loop is closed (process shutting down): nobody is listening any more.
            self.cancel.set()

    def count_tokens(self, k: int = 1) -> None:
        """Record ``k`` generated tokens."""
        stats = self._engine.stats
        with stats.lock:
            self.tokens += k
            stats.generation_tokens_total += k

    def add_prompt_tokens(self, k: int) -> None:
        """Record ``k`` more input tokens (pooling jobs learn their count as they run)."""
        stats = self._engine.stats
        with stats.lock:
            self.prompt_tokens += k
            stats.prompt_tokens_total += k

    def abort(self) -> None:
        """Stop the request's jobs (they notice within one model step); no-op once done."""
        if not self.finished:
            self.cancel.set()

    async def events(self) -> AsyncIterator[Event]:
        """The request's events, in order, until its last job has returned."""
        while True:
            event = await self._queue.get()
            if event is _DONE:
                return
            yield event

    async def result(self) -> Any:
        """The value of a single-job request; re-raises what the job raised."""
        value: Any = None
        failure: BaseException | None = None
        async for event in self.events():
            if isinstance(event, JobFailed):
                failure = event.error
            elif isinstance(event, JobResult):
                value = event.value
        if failure is not None:
            raise failure
        if value is None:
            raise UnavailableError("the request was cancelled")
        return value

    # Worker-thread side: bookkeeping around each job.
    def _job_started(self) -> None:
        stats = self._engine.stats
        with stats.lock:
            self._started += 1
            if self._started == 1:
                stats.waiting -= 1
                stats.running += 1
                stats.prompt_tokens_total += self.prompt_tokens

    def _job_done(self) -> None:
        stats = self._engine.stats
        with stats.lock:
            self._done += 1
            if self._done < self._jobs:
                return
            self.finished = True
            stats.running -= 1
            aborted = self.cancel.is_set()
            if aborted:
                stats.aborted += 1
            else:
                stats.completed += 1
        self._engine._forget(self)
        elapsed = (time.monotonic() - self._created) * 1000
        if aborted:
            log.info("request %s aborted after %d tokens", self.id, self.tokens)
        else:
            log.info(
                "request %s finished: %d prompt + %d generated tokens in %.0f ms",
                self.id,
                self.prompt_tokens,
                self.tokens,
                elapsed,
            )
        self.emit(_DONE)


class Engine:
    """The worker pool and the live requests."""

    def __init__(self, max_concurrency: int):
        self.stats = Stats()
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="gen")
        self._active: set[RequestHandle] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, request_id: str, jobs: list[Job], prompt_tokens: int) -> RequestHandle:
        """Queue the request's jobs (call on the event loop); events follow on the handle."""
        if self._closed:
            raise UnavailableError("the engine is shutting down")
        handle = RequestHandle(request_id, self, len(jobs), prompt_tokens)
        with self.stats.lock:
            self.stats.waiting += 1
        with self._lock:
            self._active.add(handle)
        for job in jobs:
            self._pool.submit(self._run, handle, job)
        return handle

    def _run(self, handle: RequestHandle, job: Job) -> None:
        handle._job_started()
        try:
            # Always called, even when already cancelled: the job checks the flag itself
            # before its first step and reports its choices as aborted.
            value = job(handle)
            if value is not None:
                handle.emit(JobResult(value))
        except Exception as exc:
            # Reported to the request (the route renders it). FleetErrors are deliberate
            # (a cancelled pooling job, say); anything else is a bug, logged with its trace.
            if not isinstance(exc, FleetError):
                log.exception("request %s failed", handle.id)
            handle.emit(JobFailed(exc))
        finally:
            handle._job_done()

    def _forget(self, handle: RequestHandle) -> None:
        with self._lock:
            self._active.discard(handle)

    def cancel_all(self) -> int:
        """Abort every live request; returns how many."""
        with self._lock:
            live = list(self._active)
        for handle in live:
            handle.abort()
        return len(live)

    def shutdown(self, wait_s: float = 2.0) -> bool:
        """Refuse new work, cancel the live requests, and wait up to ``wait_s`` for the
        workers; True when they all stopped."""
        self._closed = True
        self.cancel_all()
        # Queued jobs are not dropped: they start, see the cancel flag and return at once,
        # which keeps every request's bookkeeping (and /stats) consistent.
        self._pool.shutdown(wait=False)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._active:
                    return True
            time.sleep(0.02)
        return False
