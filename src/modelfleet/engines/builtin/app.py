"""The engine's ASGI application: routes, error handling and lifespan.

Routes of every task are mounted whatever the task; a route the loaded model cannot
serve answers 404 with a message that says which task the engine serves, rather than
the bare "no route" an unknown path gets.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from modelfleet.engines.builtin import routes_generate, routes_pooling
from modelfleet.engines.builtin.context import ServingContext
from modelfleet.engines.builtin.errors import EXCEPTION_HANDLERS, endpoint
from modelfleet.engines.builtin.generator import TextGenerator
from modelfleet.engines.builtin.httpio import JSONResponse, read_json
from modelfleet.engines.builtin.openai_format import models_list
from modelfleet.engines.builtin.protocol import (
    ChatRequest,
    SamplingParams,
    parse_detokenize,
    parse_tokenize,
)
from modelfleet.engines.builtin.validate import bad

log = logging.getLogger("modelfleet.engines.builtin")


def _ctx(request: Request) -> ServingContext:
    ctx: ServingContext = request.app.state.ctx
    return ctx


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def models(request: Request) -> Response:
    ctx = _ctx(request)
    return JSONResponse(models_list(ctx.model_name, ctx.args.model, ctx.max_model_len, ctx.created))


async def stats(request: Request) -> Response:
    return JSONResponse(_ctx(request).engine.stats.snapshot())


async def metrics(request: Request) -> Response:
    ctx = _ctx(request)
    return PlainTextResponse(
        ctx.engine.stats.prometheus(ctx.model_name),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )


@endpoint
async def tokenize(request: Request) -> Response:
    """vLLM's ``/tokenize``: ``prompt`` with the tokenizer, ``messages`` through the chat
    template (chat task only)."""
    ctx = _ctx(request)
    req = parse_tokenize(await read_json(request))
    if req.messages is not None:
        if not isinstance(ctx.generator, TextGenerator):
            raise bad(f"'messages' needs a chat model; this engine serves {ctx.task}", "messages")
        text = ctx.generator.render_chat(
            ChatRequest(
                req.messages, SamplingParams(), add_generation_prompt=req.add_generation_prompt
            )
        )
    else:
        text = req.prompt or ""
    tokens = list(ctx.tokenizer.encode(text, add_special_tokens=req.add_special_tokens))
    return JSONResponse(
        {"tokens": tokens, "count": len(tokens), "max_model_len": ctx.max_model_len}
    )


@endpoint
async def detokenize(request: Request) -> Response:
    """vLLM's ``/detokenize``: the text of token ids (special tokens kept)."""
    ctx = _ctx(request)
    tokens = parse_detokenize(await read_json(request))
    vocab = len(ctx.tokenizer)
    if tokens and max(tokens) >= vocab:
        raise bad(f"token {max(tokens)} is outside the vocabulary ({vocab})", "tokens")
    text = ctx.tokenizer.decode(
        tokens, skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
    return JSONResponse({"prompt": text})


def build_app(ctx: ServingContext) -> Starlette:
    """The application serving ``ctx``; its shutdown cancels whatever still runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # Reached after uvicorn's graceful window (or at once when idle): stop decoding.
        cancelled = ctx.engine.cancel_all()
        if cancelled:
            log.info("shutdown: cancelled %d running request(s)", cancelled)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/detokenize", detokenize, methods=["POST"]),
        Route("/v1/chat/completions", routes_generate.chat_completions, methods=["POST"]),
        Route("/v1/completions", routes_generate.completions, methods=["POST"]),
        Route("/v1/embeddings", routes_pooling.embeddings, methods=["POST"]),
        Route("/v1/rerank", routes_pooling.rerank, methods=["POST"]),
        Route("/rerank", routes_pooling.rerank, methods=["POST"]),
        Route("/v1/score", routes_pooling.score, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.ctx = ctx
    return app
