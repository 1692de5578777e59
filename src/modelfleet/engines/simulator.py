"""A simulated engine: a real process speaking the OpenAI protocol, no model.

``python -m modelfleet.engines.simulator --port P [--served-model-name N]
[--prefill-ms-per-token 0] [--decode-ms-per-token 0] [--max-tokens-default 16]``

It answers chat, completions (streaming or not), embeddings and rerank with
deterministic text whose timing follows a simple model: prefill time per
prompt token, then decode time per output token. It counts what it serves
(``GET /stats``) so tests and benchmarks can see aborts and load. Users see it
only when a config declares ``engine: simulator``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import random
import threading
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()


class Simulator:
    def __init__(self, args: argparse.Namespace):
        self.name = args.served_model_name
        self.prefill_s = args.prefill_ms_per_token / 1000
        self.decode_s = args.decode_ms_per_token / 1000
        self.default_tokens = args.max_tokens_default
        self.faults = Faults(args)
        self.served = 0
        self.stats = {"running": 0, "waiting": 0, "completed": 0, "aborted": 0,
                      "prompt_tokens_total": 0, "generation_tokens_total": 0}

    # -- helpers ------------------------------------------------------------

    @staticmethod
    def _prompt_tokens(body: dict[str, Any]) -> int:
        if "messages" in body:
            text = " ".join(str(m.get("content", "")) for m in body["messages"]
                            if isinstance(m, dict))
        else:
            text = str(body.get("prompt", body.get("input", "")))
        return max(1, len(text.split()))

    def _words(self, n: int) -> list[str]:
        return [WORDS[i % len(WORDS)] for i in range(n)]

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise _bad("body is not JSON") from None
        if not isinstance(body, dict):
            raise _bad("body must be an object")
        # Like vLLM: a name it does not serve is a 404.
        if body.get("model") not in (None, self.name):
            raise web.HTTPNotFound(text=_dumps({"error": {
                "message": f"The model `{body['model']}` does not exist.",
                "type": "NotFoundError", "code": 404, "param": "model"}}),
                content_type="application/json")
        return body

    # -- routes ---------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.name, "object": "model", "created": 0, "owned_by": "simulator"}]})

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        fault = await self.faults.before(self)
        if fault is not None:
            return fault
        chat = request.path.endswith("chat/completions")
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") \
            or self.default_tokens
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise _bad("max_tokens must be a positive integer", "max_tokens")
        prompt_tokens = self._prompt_tokens(body)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:16]
        self.stats["running"] += 1
        self.stats["prompt_tokens_total"] += prompt_tokens
        produced = 0
        try:
            if self.prefill_s:
                await asyncio.sleep(self.prefill_s * prompt_tokens)
            if body.get("stream"):
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                for i, word in enumerate(self._words(max_tokens)):
                    if self.decode_s:
                        await asyncio.sleep(self.decode_s)
                    if i == max_tokens // 2 and self.faults.stall_mid_stream_s:
                        await asyncio.sleep(self.faults.stall_mid_stream_s)
                    produced += 1
                    await resp.write(b"data: " + orjson.dumps(
                        self._chunk(rid, chat, word + " ", None)) + b"\n\n")
                await resp.write(b"data: " + orjson.dumps(
                    self._chunk(rid, chat, "", "length")) + b"\n\n")
                if (body.get("stream_options") or {}).get("include_usage"):
                    await resp.write(b"data: " + orjson.dumps({
                        "id": rid, "object": "chat.completion.chunk", "choices": [],
                        "usage": _usage(prompt_tokens, produced)}) + b"\n\n")
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
                self.stats["completed"] += 1
                return resp
            if self.decode_s:
                await asyncio.sleep(self.decode_s * max_tokens)
            produced = max_tokens
            text = " ".join(self._words(max_tokens))
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            self.stats["completed"] += 1
            return web.json_response({
                "id": rid, "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()), "model": self.name, "choices": [choice],
                "usage": _usage(prompt_tokens, produced)}, dumps=_dumps)
        except (asyncio.CancelledError, ConnectionResetError):
            self.stats["aborted"] += 1
            print(f"request {rid} aborted after {produced} tokens", flush=True)
            raise
        finally:
            self.stats["running"] -= 1
            self.stats["generation_tokens_total"] += produced

    def _chunk(self, rid: str, chat: bool, text: str, finish: str | None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["delta"] = {"content": text} if text else {}
        else:
            choice["text"] = text
        return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()), "model": self.name, "choices": [choice]}

    async def tokenize(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        words = str(body.get("prompt", "")).split()
        return web.json_response({"tokens": [len(w) for w in words], "count": len(words),
                                  "max_model_len": 4096})

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise _bad("input must be a string or a list", "input")
        data = [{"object": "embedding", "index": i, "embedding": _vector(str(t))}
                for i, t in enumerate(inputs)]
        tokens = sum(len(str(t).split()) for t in inputs)
        return web.json_response({"object": "list", "data": data, "model": self.name,
                                  "usage": _usage(tokens, 0)}, dumps=_dumps)


class Faults:
    """Injected faults: errors at a rate, stalls, a crash after N requests."""

    def __init__(self, args: argparse.Namespace):
        self.error_rate = args.error_rate
        self.error_status = args.error_status
        self.stall_first_byte_s = args.stall_first_byte_s
        self.stall_mid_stream_s = args.stall_mid_stream_s
        self.crash_after = args.crash_after
        self.random = random.Random(args.seed)

    async def before(self, sim: Simulator) -> web.Response | None:
        """The fault to answer with, if any; may stall or exit the process."""
        sim.served += 1
        if self.crash_after and sim.served > self.crash_after:
            print(f"crashing after {self.crash_after} requests (fault injection)", flush=True)
            os._exit(70)
        if self.error_rate and self.random.random() < self.error_rate:
            return web.json_response({"error": {
                "message": "injected fault", "type": "server_error", "code": "INJECTED_FAULT",
                "param": None}}, status=self.error_status, headers={"Retry-After": "1"})
        if self.stall_first_byte_s:
            await asyncio.sleep(self.stall_first_byte_s)
        return None


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _vector(text: str, dims: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [b / 255 - 0.5 for b in digest[:dims]]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _bad(message: str, param: str | None = None) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=_dumps({"error": {
        "message": message, "type": "invalid_request_error", "code": "INVALID_PARAMETER",
        "param": param}}), content_type="application/json")


def _exit_with_parent() -> None:
    """Leave when the process that launched us is gone (even after its SIGKILL)."""
    parent = int(os.environ.get("MODELFLEET_PARENT_PID", "0") or 0)
    if not parent:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def build_app(args: argparse.Namespace) -> web.Application:
    sim = Simulator(args)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/health", sim.health)
    app.router.add_get("/stats", sim.get_stats)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_post("/v1/chat/completions", sim.generate)
    app.router.add_post("/v1/completions", sim.generate)
    app.router.add_post("/v1/embeddings", sim.embeddings)
    app.router.add_post("/tokenize", sim.tokenize)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default="simulator")
    parser.add_argument("--model", default="simulator")
    parser.add_argument("--prefill-ms-per-token", type=float, default=0.0)
    parser.add_argument("--decode-ms-per-token", type=float, default=0.0)
    parser.add_argument("--max-tokens-default", type=int, default=16)
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction answered with "
                        "--error-status")
    parser.add_argument("--error-status", type=int, default=500)
    parser.add_argument("--stall-first-byte-s", type=float, default=0.0)
    parser.add_argument("--stall-mid-stream-s", type=float, default=0.0)
    parser.add_argument("--crash-after", type=int, default=0, help="exit after N requests")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    _exit_with_parent()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(f"simulator {args.served_model_name} on {args.host}:{args.port}", flush=True)
    web.run_app(build_app(args), host=args.host, port=args.port, print=None,
                access_log=None, shutdown_timeout=2)


if __name__ == "__main__":
    main()
