"""The JSON the simulator answers with: OpenAI bodies, SSE frames and error envelopes."""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import orjson
from aiohttp import web

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()


def words(n: int) -> list[str]:
    """The deterministic output: ``alpha bravo charlie ...``, cycling."""
    return [WORDS[i % len(WORDS)] for i in range(n)]


def usage(prompt: int, completion: int, cached: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
    if cached is not None:  # llama.cpp's names too: reused and processed prompt tokens
        out["prompt_tokens_details"] = {"cached_tokens": cached}
        out["cache_n"], out["prompt_n"] = cached, prompt - cached
    return out


def chunk(rid: str, model: str, chat: bool, text: str, finish: str | None) -> dict[str, Any]:
    """One streamed chunk: a token's text, or the closing chunk with its finish reason."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["delta"] = {"content": text} if text else {}
    else:
        choice["text"] = text
    return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice]}


def role_chunk(rid: str, model: str) -> dict[str, Any]:
    """The first chunk of a chat stream, as vLLM and OpenAI send it: the role, no text."""
    return {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                               "content": ""},
                                         "finish_reason": None}]}


def usage_chunk(rid: str, model: str, chat: bool, use: dict[str, Any]) -> dict[str, Any]:
    """The last chunk of a stream with ``stream_options.include_usage``: no choices."""
    return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [], "usage": use}


def completion(rid: str, model: str, chat: bool, text: str, finish: str,
               use: dict[str, Any]) -> dict[str, Any]:
    """A whole (non-streamed) chat completion or text completion."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {"id": rid, "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice], "usage": use}


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(obj, status=status, headers=headers, dumps=dumps)


def bad_request(message: str, param: str | None = None) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=dumps({"error": {
        "message": message, "type": "invalid_request_error", "code": "INVALID_PARAMETER",
        "param": param}}), content_type="application/json")


def model_not_found(model: Any) -> web.HTTPNotFound:
    # vLLM's answer for a name it does not serve.
    return web.HTTPNotFound(text=dumps({"error": {
        "message": f"The model `{model}` does not exist.", "type": "NotFoundError",
        "code": 404, "param": "model"}}), content_type="application/json")


def queue_full(waiting: int) -> web.Response:
    return json({"error": {
        "message": f"the engine's queue is full ({waiting} waiting)",
        "type": "service_unavailable", "code": "QUEUE_FULL", "param": None}},
        status=503, headers={"Retry-After": "1"})


async def read_body(request: web.Request, model: str) -> dict[str, Any]:
    """The request's JSON object; 400 if it is not one, 404 if it names another model."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise bad_request("body is not JSON") from None
    if not isinstance(body, dict):
        raise bad_request("body must be an object")
    if body.get("model") not in (None, model):
        raise model_not_found(body["model"])
    return body


def vector(text: str, dims: int = 8) -> list[float]:
    """A deterministic unit vector for an embedding input."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [b / 255 - 0.5 for b in digest[:dims]]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]
