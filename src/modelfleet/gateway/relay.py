"""The relay: one request to one engine instance, bytes through as they come.

Bodies go upstream as the client sent them. Responses come back without
re-serialisation: a JSON answer is passed on whole, an SSE stream chunk by
chunk as each arrives. POSTs to plain ``http://host:port`` engines go through
our own keep-alive pool (``upstream.py``: a fraction of aiohttp's cost per
request); HTTPS, Unix sockets and other methods through aiohttp. Client and
socket errors are translated here, at the edge, into FleetErrors; nothing from
either client leaves this module.

Timeouts: ``connect``; first byte (the response head), ``first_byte`` plus
``first_byte_per_token`` × max_tokens since a non-streaming engine answers
only when it has generated everything; ``idle`` between two body reads. An
error before the response began is raised (the caller renders it as JSON);
one after a stream began goes out as a last SSE ``data:`` event with the
error object, then ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from modelfleet.engines.base import ResponseRewriter
from modelfleet.errors import (
    DownstreamFailedError,
    FleetError,
    InferenceTimeoutError,
    UpstreamError,
    sse_error_event,
)
from modelfleet.gateway.asgi import Send
from modelfleet.gateway.upstream import Pool, Response, UpstreamConnectError, plain_target
from modelfleet.settings import TimeoutSettings

# Response headers worth passing on; hop-by-hop and length headers are ours to set.
_PASS_HEADERS = frozenset({"content-type", "x-request-id", "cache-control"})
_PASS_RAW = frozenset(name.encode() for name in _PASS_HEADERS)
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


# An SSE event that carries generated text (not the role chunk, not an empty delta).
_TEXT_EVENT = re.compile(rb'"(?:content|text)":"(?!")')


@dataclass(slots=True)
class Outcome:
    status: int = 0
    usage: dict | None = None
    streamed: bool = False
    error: FleetError | None = None
    first_token_at: float | None = None  # monotonic time the first text chunk went out
    text_events: int = 0


def make_session(timeouts: TimeoutSettings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, connect=timeouts.connect),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        json_serialize=lambda o: orjson.dumps(o).decode(),
    )


# An engine's answer: from our own keep-alive pool (plain http), else from aiohttp.
Answer = aiohttp.ClientResponse | Response


class Relay:
    def __init__(self, session: aiohttp.ClientSession, timeouts: TimeoutSettings):
        self.session = session
        self.timeouts = timeouts
        self.pool = Pool(timeouts.connect)  # POSTs to http://host:port (see upstream.py)

    def close(self) -> None:
        self.pool.close()

    def first_byte_timeout(self, max_tokens: object) -> float:
        tokens = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 256
        return self.timeouts.first_byte + self.timeouts.first_byte_per_token * tokens

    async def _open(
        self, method: str, url: str, body: bytes, max_tokens: object, api_key: str | None,
        session: aiohttp.ClientSession | None = None, request_id: str | None = None,
    ) -> Answer:
        """Send the request and wait for the response head, errors translated.
        ``session``: an instance's own (a Unix socket); ``request_id``: X-Request-Id."""
        headers = {"Content-Type": "application/json", "Accept": "*/*"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if request_id:
            headers["X-Request-Id"] = request_id
        target = plain_target(url) if session is None and method == "POST" else None
        try:
            if target is not None:  # the pool times the head itself
                return await self.pool.request(*target, body, headers,
                                               timeout=self.first_byte_timeout(max_tokens))
            async with asyncio.timeout(self.first_byte_timeout(max_tokens)):
                return await (session or self.session).request(method, url, data=body,
                                                               headers=headers)
        except TimeoutError:
            raise InferenceTimeoutError("the engine did not answer in time") from None
        except (aiohttp.ClientConnectorError, UpstreamConnectError) as exc:
            raise DownstreamFailedError(f"the engine is unreachable: {exc.strerror}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(f"the engine broke the connection: {_describe(exc)}") from None

    async def forward(
        self,
        send: Send,
        method: str,
        url: str,
        body: bytes,
        *,
        path: str,
        max_tokens: object = None,
        api_key: str | None = None,
        rewriter: ResponseRewriter | None = None,
        session: aiohttp.ClientSession | None = None,
        request_id: str | None = None,
    ) -> Outcome:
        """Send ``body`` to ``url`` and answer the client through ``send``.

        Raises FleetError when nothing was sent to the client yet. Cancelling
        the calling task (client gone) closes the upstream connection at once.
        ``request_id`` goes upstream and back to the client as X-Request-Id.
        """
        resp = await self._open(method, url, body, max_tokens, api_key, session, request_id)
        outcome = Outcome()
        try:
            outcome.status = resp.status
            if resp.content_type == "text/event-stream" and resp.status == 200:
                outcome.streamed = True
                await self._stream(send, resp, outcome, path, rewriter, request_id)
            else:
                await self._whole(send, resp, outcome, rewriter, request_id)
        except BaseException:
            resp.close()  # an unfinished response must not go back to the pool
            raise
        finally:
            resp.release()
        return outcome

    async def call_json(
        self, url: str, payload: dict[str, Any], *, max_tokens: object = None,
        api_key: str | None = None, session: aiohttp.ClientSession | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """POST ``payload`` and return the engine's JSON answer; errors are raised."""
        resp = await self._open("POST", url, orjson.dumps(payload), max_tokens, api_key,
                                session, request_id)
        try:
            data = await self._read(resp)
        except BaseException:
            resp.close()
            raise
        finally:
            resp.release()
        if resp.status >= 400:
            raise upstream_error(resp.status, data)
        try:
            answer = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError("the engine answered with something that is not JSON") from None
        if not isinstance(answer, dict):
            raise UpstreamError("the engine answered with JSON that is not an object")
        return answer

    async def _read(self, resp: Answer) -> bytes:
        try:
            if isinstance(resp, Response):  # times its own waits
                return await resp.read(self.timeouts.idle)
            async with asyncio.timeout(self.timeouts.idle):
                return await resp.read()
        except TimeoutError:
            raise InferenceTimeoutError("the engine stalled while answering") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(f"the engine broke the connection: {_describe(exc)}") from None

    async def _whole(
        self, send: Send, resp: Answer, outcome: Outcome,
        rewriter: ResponseRewriter | None, request_id: str | None = None,
    ) -> None:
        data = await self._read(resp)
        if rewriter is not None and resp.status < 400:
            data = rewriter.whole(data)
        if resp.status >= 400:
            err = upstream_error(resp.status, data)
            retry_after = resp.headers.get("Retry-After", "")
            if retry_after.isdigit():
                err.retry_after = float(retry_after)
            raise err
        if isinstance(resp, Response):  # names already lower-case bytes
            headers = [(k, v) for k, v in resp.headers.raw if k in _PASS_RAW]
        else:
            headers = [(k.lower().encode(), v.encode()) for k, v in resp.headers.items()
                       if k.lower() in _PASS_HEADERS]
        if request_id is not None:  # ours, not the engine's echo of it
            headers = [h for h in headers if h[0] != b"x-request-id"]
            headers.append((b"x-request-id", request_id.encode()))
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        if resp.content_type == "application/json":
            outcome.usage = _usage_of(data)

    async def _stream(
        self, send: Send, resp: Answer, outcome: Outcome, path: str,
        rewriter: ResponseRewriter | None, request_id: str | None = None,
    ) -> None:
        headers = _SSE_HEADERS if request_id is None else [
            *_SSE_HEADERS, (b"x-request-id", request_id.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        content = resp.content
        idle = self.timeouts.idle
        own = resp if isinstance(resp, Response) else None  # times its own waits
        pending = b""  # with a rewriter: the part of a line not yet complete
        try:
            while True:
                if own is not None:
                    chunk = await own.readany(idle)
                else:
                    async with asyncio.timeout(idle):
                        chunk = await content.readany()
                if not chunk:
                    if pending:
                        await send({"type": "http.response.body", "more_body": True,
                                    "body": rewriter.event(pending) if rewriter else pending})
                    break
                if rewriter is not None:
                    # Rewrite whole lines only: chunks do not respect line boundaries.
                    complete, sep, pending = (pending + chunk).rpartition(b"\n")
                    if not sep:  # no line ended yet: all of it waits in pending
                        continue
                    chunk = b"\n".join(rewriter.event(line) for line in complete.split(b"\n"))
                    chunk += b"\n"
                if b'"usage"' in chunk:
                    outcome.usage = _usage_in_events(chunk) or outcome.usage
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                texts = len(_TEXT_EVENT.findall(chunk))
                if texts:
                    outcome.text_events += texts
                    if outcome.first_token_at is None:
                        outcome.first_token_at = time.monotonic()
        except TimeoutError:
            outcome.error = InferenceTimeoutError("the engine stalled mid-stream")
        except (aiohttp.ClientError, OSError) as exc:
            outcome.error = UpstreamError(f"the engine broke the stream: {_describe(exc)}")
        if outcome.error is not None:
            await send({"type": "http.response.body", "body": sse_error_event(outcome.error, path),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def upstream_error(status: int, data: bytes) -> FleetError:
    """The engine's own error, kept (status, message, code) in our envelope."""
    message, code, type_, param = f"engine answered {status}", None, None, None
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        err = parsed.get("error", parsed)
        if isinstance(err, dict):
            message = str(err.get("message") or err.get("detail") or message)
            code = err.get("code") if isinstance(err.get("code"), str) else None
            type_ = err.get("type") if isinstance(err.get("type"), str) else None
            param = err.get("param") if isinstance(err.get("param"), str) else None
        elif isinstance(err, str):
            message = err
    elif data:
        message = data[:500].decode("utf-8", "replace")
    exc = FleetError(message, param=param, code=code or _code_for(status))
    exc.status = status if 400 <= status < 600 else 502
    exc.type = type_ or _type_for(status)
    return exc


def _code_for(status: int) -> str:
    return {400: "INVALID_PARAMETER", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
            413: "PAYLOAD_TOO_LARGE", 422: "INVALID_PARAMETER", 429: "RATE_LIMITED",
            503: "MODEL_UNAVAILABLE", 504: "INFERENCE_TIMEOUT"}.get(status, "UPSTREAM_ERROR")


def _type_for(status: int) -> str:
    if status == 404:
        return "not_found_error"
    if 400 <= status < 500:
        return "invalid_request_error"
    return "server_error"


def _usage_of(data: bytes) -> dict | None:
    try:
        usage = orjson.loads(data).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


def _usage_in_events(chunk: bytes) -> dict | None:
    for line in chunk.split(b"\n"):
        if line.startswith(b"data: {") and b'"usage"' in line:
            usage = _usage_of(line[6:])
            if usage:
                return usage
    return None


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
