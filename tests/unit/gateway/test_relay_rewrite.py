"""The relay's answer rewriting (llama-server's timings → usage), over real HTTP."""

import asyncio
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from modelfleet.engines.llamacpp import LlamaCppAdapter
from modelfleet.gateway.relay import Relay, make_session
from modelfleet.settings import TimeoutSettings

TIMINGS = {"cache_n": 22, "prompt_n": 1, "predicted_n": 2}
LAST = {"id": "c", "choices": [], "usage": {"prompt_tokens": 23, "completion_tokens": 2,
                                            "total_tokens": 25}, "timings": TIMINGS}


async def _stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    raw = (b'data: {"id":"c","choices":[{"delta":{"content":"hi"}}]}\n\n'
           + b"data: " + orjson.dumps(LAST) + b"\n\ndata: [DONE]\n\n")
    for i in range(0, len(raw), 7):  # chunks that cut lines anywhere
        await resp.write(raw[i:i + 7])
        await asyncio.sleep(0)
    return resp


async def _whole(request: web.Request) -> web.Response:
    return web.json_response({"id": "c", "choices": [], "usage": LAST["usage"],
                              "timings": TIMINGS})


async def _relay(path: str) -> tuple[list[dict[str, Any]], Any]:
    app = web.Application()
    app.router.add_post("/stream", _stream)
    app.router.add_post("/whole", _whole)
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async with TestServer(app) as server, make_session(TimeoutSettings()) as session:
        outcome = await Relay(session, TimeoutSettings()).forward(
            send, "POST", str(server.make_url(path)), b"{}", path="/v1/chat/completions",
            rewriter=LlamaCppAdapter().response_rewriter())
    return sent, outcome


async def test_relay_rewrites_whole_answers() -> None:
    sent, outcome = await _relay("/whole")
    body = orjson.loads(sent[1]["body"])
    assert body["usage"]["cache_n"] == 22 and body["usage"]["prompt_n"] == 1
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 22
    assert outcome.usage["cache_n"] == 22


async def test_relay_rewrites_stream_lines_cut_across_chunks() -> None:
    sent, outcome = await _relay("/stream")
    body = b"".join(m.get("body", b"") for m in sent[1:])
    events = [e for e in body.split(b"\n\n") if e]
    assert events[0] == b'data: {"id":"c","choices":[{"delta":{"content":"hi"}}]}'
    last = orjson.loads(events[1].removeprefix(b"data: "))
    assert last["usage"]["cache_n"] == 22 and last["usage"]["prompt_n"] == 1
    assert events[2] == b"data: [DONE]"
    assert outcome.usage is not None and outcome.usage["cache_n"] == 22
