"""``POST /v1/chat/completions`` and ``POST /v1/completions``.

Both parse and check the request on the event loop (fast: templating and tokenizing),
submit one :class:`~.generator.GenerationJob` per prompt to the worker pool, then either
stream the job events as server-sent events or collect them into one response. Either
way the client's disconnect aborts the generation (see :mod:`.httpio`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from modelfleet.engines.builtin.context import ServingContext
from modelfleet.engines.builtin.errors import endpoint
from modelfleet.engines.builtin.generator import GenerationJob, TextGenerator
from modelfleet.engines.builtin.httpio import (
    SSE_DONE,
    EventStreamResponse,
    JSONResponse,
    await_or_disconnect,
    read_json,
    sse,
)
from modelfleet.engines.builtin.openai_format import (
    ChoiceState,
    Envelope,
    generation_usage,
    new_id,
)
from modelfleet.engines.builtin.protocol import parse_chat, parse_completion
from modelfleet.engines.builtin.runtime import (
    ChoiceFinished,
    JobFailed,
    RequestHandle,
    TextDelta,
)
from modelfleet.engines.builtin.validate import bad
from modelfleet.errors import as_fleet_error, sse_error_event


def _ctx(request: Request) -> ServingContext:
    ctx: ServingContext = request.app.state.ctx
    return ctx


@endpoint
async def chat_completions(request: Request) -> Response:
    ctx = _ctx(request)
    generator = ctx.need_generator(request.url.path)
    chat = parse_chat(await read_json(request), generator.sampling_defaults)
    prompt_ids = generator.encode(generator.render_chat(chat), add_special_tokens=False)
    job = GenerationJob(prompt_ids, chat.params, generator.budget(len(prompt_ids), chat.params))
    envelope = Envelope(
        new_id("chatcmpl"), ctx.model_name, chat=True, include_usage=chat.include_usage
    )
    return await _serve(request, ctx, generator, envelope, [job], chat.stream, echo=None)


@endpoint
async def completions(request: Request) -> Response:
    ctx = _ctx(request)
    generator = ctx.need_generator(request.url.path)
    req = parse_completion(await read_json(request), generator.sampling_defaults)
    n = req.params.n
    jobs, echo = [], []
    for k, prompt in enumerate(req.prompts):
        if isinstance(prompt, str):
            ids = generator.encode(prompt, add_special_tokens=True)
        else:
            if max(prompt) >= generator.vocab_size:
                raise bad(f"prompt token {max(prompt)} is outside the vocabulary", "prompt")
            ids = prompt
        budget = generator.budget(len(ids), req.params, "prompt")
        jobs.append(GenerationJob(ids, req.params, budget, first_index=k * n))
        if req.echo:
            text = prompt if isinstance(prompt, str) else generator.decode(prompt)
            echo += [text] * n
    envelope = Envelope(new_id("cmpl"), ctx.model_name, chat=False, include_usage=req.include_usage)
    return await _serve(
        request, ctx, generator, envelope, jobs, req.stream, echo=echo if req.echo else None
    )


async def _serve(
    request: Request,
    ctx: ServingContext,
    generator: TextGenerator,
    envelope: Envelope,
    jobs: list[GenerationJob],
    stream: bool,
    echo: list[str] | None,
) -> Response:
    """Run the jobs; answer a stream or, once every choice has finished, one response."""
    prompt_tokens = sum(len(job.prompt_ids) for job in jobs)
    handle = ctx.engine.submit(
        envelope.id,
        [functools.partial(generator.generate, job) for job in jobs],
        prompt_tokens,
    )
    choices = len(jobs) * jobs[0].params.n
    if stream:
        events = _stream(handle, envelope, choices, prompt_tokens, echo, request.url.path)
        return EventStreamResponse(events, on_close=handle.abort)

    states = [ChoiceState(parts=[echo[i]] if echo else []) for i in range(choices)]
    failures: list[BaseException] = []

    async def collect() -> None:
        async for event in handle.events():
            if isinstance(event, TextDelta):
                states[event.index].parts.append(event.text)
            elif isinstance(event, ChoiceFinished):
                state = states[event.index]
                state.finish_reason, state.stop_reason = event.reason, event.stop_reason
                state.tokens = event.tokens
            elif isinstance(event, JobFailed):
                failures.append(event.error)

    try:
        await await_or_disconnect(request, asyncio.ensure_future(collect()), handle.abort)
    finally:
        # Also reached when the task is cancelled (shutdown): stop the generation.
        handle.abort()
    if failures:
        raise as_fleet_error(failures[0])
    counts = generation_usage(prompt_tokens, sum(state.tokens for state in states))
    return JSONResponse(envelope.response(states, counts))


async def _stream(
    handle: RequestHandle,
    envelope: Envelope,
    choices: int,
    prompt_tokens: int,
    echo: list[str] | None,
    path: str,
) -> AsyncIterator[bytes]:
    """The SSE body: a first chunk per choice (chat: the role; completions with echo: the
    prompt), text chunks, a finish chunk per choice, the usage chunk if asked, [DONE]."""
    for index in range(choices):
        if envelope.chat:
            yield sse(envelope.chunk(index, role=True))
        elif echo:
            yield sse(envelope.chunk(index, text=echo[index]))
    completion_tokens = 0
    async for event in handle.events():
        if isinstance(event, TextDelta):
            yield sse(envelope.chunk(event.index, text=event.text))
        elif isinstance(event, ChoiceFinished):
            completion_tokens += event.tokens
            yield sse(
                envelope.chunk(
                    event.index, finish_reason=event.reason, stop_reason=event.stop_reason
                )
            )
        elif isinstance(event, JobFailed):
            # The stream has begun, so the status is spent: the error travels as an event.
            handle.abort()
            yield sse_error_event(as_fleet_error(event.error), path)
            return
    if envelope.include_usage:
        yield sse(envelope.usage_chunk(generation_usage(prompt_tokens, completion_tokens)))
    yield SSE_DONE
