"""``POST /v1/embeddings``, ``/v1/rerank`` (and ``/rerank``), ``/v1/score``.

The model work runs as one job on the worker pool (so the event loop keeps answering
``/health`` during a large batch) and stops between batches if the client leaves.
Rerank and score work with either pooling model: cosine similarity for an embedder,
the cross-encoder's own score for a reranker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import torch
from starlette.requests import Request
from starlette.responses import Response

from modelfleet.engines.builtin.context import ServingContext
from modelfleet.engines.builtin.errors import endpoint
from modelfleet.engines.builtin.httpio import JSONResponse, await_or_disconnect, read_json
from modelfleet.engines.builtin.openai_format import (
    embedding_list,
    new_id,
    rerank_result,
    score_list,
)
from modelfleet.engines.builtin.protocol import parse_embedding, parse_rerank, parse_score
from modelfleet.engines.builtin.runtime import RequestHandle
from modelfleet.engines.builtin.validate import bad


def _ctx(request: Request) -> ServingContext:
    ctx: ServingContext = request.app.state.ctx
    return ctx


async def _run(
    request: Request, ctx: ServingContext, request_id: str, work: Callable[[Any], tuple[Any, int]]
) -> Any:
    """Run ``work(cancel_event)`` (which returns ``(value, input tokens)``) on the pool,
    count its tokens, and return its value; the client leaving cancels it."""

    def job(handle: RequestHandle) -> Any:
        value, tokens = work(handle.cancel)
        handle.add_prompt_tokens(tokens)
        return value

    handle = ctx.engine.submit(request_id, [job], 0)
    try:
        return await await_or_disconnect(
            request, asyncio.ensure_future(handle.result()), handle.abort
        )
    finally:
        handle.abort()


@endpoint
async def embeddings(request: Request) -> Response:
    ctx = _ctx(request)
    embedder = ctx.need_embedder(request.url.path)
    req = parse_embedding(await read_json(request))
    if req.dimensions is not None and req.dimensions > embedder.dimensions:
        raise bad(f"'dimensions' must be <= {embedder.dimensions} for this model", "dimensions")
    vocab = len(embedder.tokenizer)
    for item in req.inputs:
        if not isinstance(item, str) and max(item) >= vocab:
            raise bad(f"input token {max(item)} is outside the vocabulary ({vocab})", "input")

    def work(cancel: Any) -> tuple[tuple[torch.Tensor, int], int]:
        vectors, counts = embedder.embed(req.inputs, cancel)
        return (vectors, sum(counts)), sum(counts)

    response_id = new_id("embd")
    vectors, tokens = await _run(request, ctx, response_id, work)
    if req.dimensions is not None:
        # Matryoshka-style truncation: keep the leading dimensions, then renormalise.
        vectors = torch.nn.functional.normalize(vectors[:, : req.dimensions], dim=-1)
    return JSONResponse(
        embedding_list(response_id, ctx.model_name, vectors, req.encoding_format, tokens)
    )


@endpoint
async def rerank(request: Request) -> Response:
    ctx = _ctx(request)
    pooler = ctx.need_pooler(request.url.path)
    req = parse_rerank(await read_json(request))

    def work(cancel: Any) -> tuple[tuple[list[float], int], int]:
        scores, tokens = pooler.rank(req.query, req.documents, cancel)
        return (scores, tokens), tokens

    response_id = new_id("rerank")
    scores, tokens = await _run(request, ctx, response_id, work)
    return JSONResponse(
        rerank_result(
            response_id,
            ctx.model_name,
            req.documents,
            scores,
            req.top_n,
            req.return_documents,
            tokens,
        )
    )


@endpoint
async def score(request: Request) -> Response:
    ctx = _ctx(request)
    pooler = ctx.need_pooler(request.url.path)
    req = parse_score(await read_json(request))

    def work(cancel: Any) -> tuple[tuple[list[float], int], int]:
        scores, tokens = pooler.score_pairs(req.pairs, cancel)
        return (scores, tokens), tokens

    response_id = new_id("score")
    scores, tokens = await _run(request, ctx, response_id, work)
    return JSONResponse(score_list(response_id, ctx.model_name, scores, tokens))
