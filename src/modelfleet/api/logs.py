"""Model logs over HTTP (seeds 002 and 003): a tail as JSON, a follow as SSE.

- ``GET /api/models/{model_id}/logs?lines=100&follow=false`` (also ``/api/v1``):
  ``{"logs": [{"timestamp": ISO-8601, "level", "message"}]}``; ``follow=true`` sends the
  same per-line objects as SSE ``data:`` events, the tail first and then new lines.
- ``GET /api/models/{alias}/logs/stream?lines=100``: seed 003's SSE events, ``historical``
  for the tail, ``historical_complete``, then ``realtime`` per new line; ``error`` if the
  model is removed, ``stream_end`` when the gateway shuts down (or the log closes while
  the model remains).
- ``GET /api/logs/stats`` and ``POST /api/logs/{alias}/clear?keep_minutes=0``.

Streams send an SSE comment every ``KEEPALIVE_S`` seconds and unsubscribe from the
model's log when the client leaves (Starlette cancels the generator on disconnect).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from modelfleet.api.core import Core, CoreDep
from modelfleet.fleet.agent_logs import agent_tail
from modelfleet.fleet.logs import CLOSED, LogLine
from modelfleet.fleet.model import ManagedModel

router = APIRouter(tags=["logs"])

KEEPALIVE_S = 15.0
MAX_LINES = 10_000
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

Lines = Annotated[int, Query(ge=1, le=MAX_LINES)]


def iso(timestamp: float) -> str:
    stamp = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def line_002(line: LogLine) -> dict[str, Any]:
    return {"timestamp": iso(line.timestamp), "level": line.level, "message": line.message}


def line_003(line: LogLine) -> dict[str, Any]:
    return {"timestamp": round(line.timestamp, 3), "message": line.message}


def sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _follow(
    core: Core,
    model: ManagedModel,
    lines: int,
    historical: Callable[[LogLine], str],
    realtime: Callable[[LogLine], str],
    *,
    historical_complete: str = "",
    on_removed: str = "",
    on_closed: Callable[[str], str] | None = None,
) -> AsyncIterator[str]:
    """The tail, then each new line until the client leaves or the log closes."""
    log = model.log
    queue = log.subscribe()  # before reading the tail, so no line falls in between
    try:
        for line in log.tail(lines):
            yield historical(line)
        if historical_complete:
            yield historical_complete
        while True:
            if log.closed and queue.empty():
                line = CLOSED
            else:
                try:
                    line = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
            if line is CLOSED:
                if core.fleet.models.get(model.name) is not model:
                    if on_removed:
                        yield on_removed
                elif on_closed:
                    yield on_closed("gateway is shutting down" if core.closing else "log closed")
                return
            yield realtime(line)
    finally:
        log.unsubscribe(queue)


async def _tail(core: Core, model: ManagedModel, lines: int) -> list[LogLine]:
    """This gateway's lines and, for a model on agents, theirs (``fleet/agent_logs.py``)."""
    remote = await agent_tail(core.coordinator, core.session, model, lines,
                              core.settings.fleet.agent_token)
    if not remote:
        return model.log.tail(lines)
    return sorted([*model.log.tail(lines), *remote], key=lambda line: line.timestamp)[-lines:]


def _stream(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/api/models/{model_id}/logs")
@router.get("/api/v1/models/{model_id}/logs", include_in_schema=False)
async def model_logs(
    model_id: str, core: CoreDep, lines: Lines = 100, follow: bool = False
) -> Any:
    """Seed 002: the last ``lines`` lines; with ``follow``, an SSE stream of them and then
    of new lines."""
    model = core.fleet.get(model_id)
    if not follow:
        return {"logs": [line_002(line) for line in await _tail(core, model, lines)]}

    def one(line: LogLine) -> str:
        return sse(line_002(line))

    return _stream(_follow(core, model, lines, one, one))


@router.get("/api/models/{alias}/logs/stream")
async def model_log_stream(alias: str, core: CoreDep, lines: Lines = 100) -> StreamingResponse:
    """Seed 003: ``historical`` events, ``historical_complete``, then ``realtime`` ones."""
    model = core.fleet.get(alias)
    return _stream(_follow(
        core, model, lines,
        lambda line: sse({"type": "historical", "log": line_003(line)}),
        lambda line: sse({"type": "realtime", "log": line_003(line)}),
        historical_complete=sse({"type": "historical_complete"}),
        on_removed=sse({"type": "error", "message": f"model {model.name!r} was removed"}),
        on_closed=lambda why: sse({"type": "stream_end", "message": why}),
    ))


@router.get("/api/logs/stats")
async def log_stats(core: CoreDep) -> dict[str, Any]:
    models = list(core.fleet.models.values())
    counts = [len(m.log.ring) for m in models]
    return {
        "success": True,
        "stats": {
            "total_models": len(models),
            "total_log_entries": sum(counts),
            "models_with_logs": sum(1 for c in counts if c),
            "active_streams": sum(m.log.subscriber_count for m in models),
        },
    }


@router.post("/api/logs/{alias}/clear")
async def clear_logs(
    alias: str, core: CoreDep, keep_minutes: Annotated[float, Query(ge=0)] = 0
) -> dict[str, Any]:
    model = core.fleet.get(alias)
    deleted = model.log.clear(keep_minutes)
    if keep_minutes:
        what = f"cleared logs older than {keep_minutes:g} minutes"
    else:
        what = "cleared all logs"
    return {"success": True, "message": f"model '{model.name}': {what}, deleted {deleted}",
            "deleted": deleted}
