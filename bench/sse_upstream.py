"""A paced OpenAI-style upstream for the streaming arms of ``bench/compare.py``.

``POST /v1/chat/completions`` with ``"stream": true`` answers ``--chunks`` SSE
chunks, one every ``--interval-ms`` (the first at once, the rest on a fixed
schedule from the first, so slow writes do not stretch the stream), each
carrying one word of content, then ``data: [DONE]``. Without ``stream`` it
answers one chat.completion. ``GET /v1/models`` and ``GET /health`` answer
200, so gateways that probe their upstream find it ready.

    python bench/sse_upstream.py --port 9100 [--chunks 20] [--interval-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from aiohttp import web

MODEL = "bench-sse"
CHAT = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


def chunk_event(index: int) -> bytes:
    """SSE event ``index`` of a stream: one content word, ``finish_reason`` on none."""
    chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
             "model": MODEL, "choices": [{"index": 0, "delta": {"content": f"w{index} "},
                                          "finish_reason": None}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def make_app(chunks: int, interval_s: float) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read() or b"{}")
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(CHAT), content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        start = time.monotonic()
        for index in range(chunks):
            delay = start + index * interval_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await resp.write(chunk_event(index))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(args.chunks, args.interval_ms / 1000), host="127.0.0.1",
                port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
