"""The simulated engine's routes and timing model.

A generation request goes: faults → a slot (or the queue, or 503 when it is
full) → encode (images) and prefill (uncached prompt tokens) → decode, one
token per ``--decode-ms-per-token``. Aborts (a client disconnect, or
``POST /abort_requests``) take effect at the next wait. See ``simulator.py``
for the flags and the disaggregated-serving protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
import uuid
from typing import Any

from aiohttp import web

from modelfleet.engines.sim import wire
from modelfleet.engines.sim.cache import PrefixCache
from modelfleet.engines.sim.faults import Faults
from modelfleet.engines.sim.job import Job, Plan
from modelfleet.engines.sim.metrics import Metrics
from modelfleet.engines.sim.prompt import Prompt, block_hashes, parse_prompt
from modelfleet.engines.sim.slots import QueueFull, Slots

ROLES = ("pd", "encode", "prefill", "decode")


class Simulator:
    """One simulated engine process: its state, counters and aiohttp handlers."""

    def __init__(self, args: argparse.Namespace) -> None:
        if args.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        self.name: str = args.served_model_name
        self.role: str = args.role
        self.prefill_s = args.prefill_ms_per_token / 1000
        self.decode_s = args.decode_ms_per_token / 1000
        self.encode_s = args.encode_ms_per_image / 1000
        self.default_tokens: int = args.max_tokens_default
        self.max_model_len: int | None = args.max_model_len
        self.faults = Faults(args)
        self.cache = PrefixCache(args.prefix_cache_blocks, args.block_size)
        self.slots = Slots(args.max_num_seqs, args.max_queue)
        self.metrics = Metrics()
        self.engine_id = str(uuid.uuid4())
        self.jobs: dict[str, Job] = {}  # by rid and by base id, for /abort_requests
        self.active: set[Job] = set()
        self.by_role = dict.fromkeys(ROLES, 0)
        self.counts = {"completed": 0, "images": 0, "mm_hashes_reused": 0,
                       "profiles_started": 0, "profiles_stopped": 0}
        self._next_block_id = 0

    # -- plain routes ---------------------------------------------------------

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def stats(self) -> dict[str, Any]:
        """The ``GET /stats`` object (see ``simulator.py`` for the fields)."""
        m = self.metrics
        return {"role": self.role, "running": self.slots.running, "waiting": self.slots.waiting,
                "completed": self.counts["completed"], "aborted": m.aborted,
                "rejected": m.rejected, "prompt_tokens_total": m.prompt_tokens,
                "generation_tokens_total": m.generation_tokens,
                "prefix_cache_queries": m.prefix_cache_queries,
                "prefix_cache_hits": m.prefix_cache_hits, "prefix_cache_blocks": len(self.cache),
                "kv_transferred_tokens": m.kv_transferred_tokens, "kv_missing": m.kv_missing,
                "images": self.counts["images"], "images_encoded": m.images_encoded,
                "mm_hashes_reused": self.counts["mm_hashes_reused"],
                "requests_by_role": dict(self.by_role),
                "profiles_started": self.counts["profiles_started"],
                "profiles_stopped": self.counts["profiles_stopped"]}

    async def get_metrics(self, request: web.Request) -> web.Response:
        text = self.metrics.render(self.name, self.slots.running, self.slots.waiting,
                                   self._kv_usage())
        return web.Response(body=text.encode(), headers={
            "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def start_profile(self, request: web.Request) -> web.Response:
        self.counts["profiles_started"] += 1
        return web.json_response({})

    async def stop_profile(self, request: web.Request) -> web.Response:
        self.counts["profiles_stopped"] += 1
        return web.json_response({})

    async def abort_requests(self, request: web.Request) -> web.Response:
        """vLLM's ``POST /abort_requests {"request_ids": [...]}``; ids are response ids
        (``chatcmpl-…``) or the X-Request-Id they were made from. Answers the ids
        found still in flight: ``{"aborted": [...]}``."""
        body = await self._json(request)
        ids = body.get("request_ids")
        if isinstance(ids, str):
            ids = [ids]
        if not isinstance(ids, list):
            raise wire.bad_request("request_ids must be a list of request ids", "request_ids")
        return web.json_response({"aborted": [rid for rid in map(str, ids) if self.abort(rid)]})

    def abort(self, rid: str) -> bool:
        """Abort a request in flight: out of the queue, or finished at its next token."""
        job = self.jobs.get(rid)
        if job is None or job.finished or job.aborted.is_set():
            return False
        job.aborted.set()
        if job.waiter is not None:
            self.slots.withdraw(job.waiter)
        return True

    # -- generation -----------------------------------------------------------

    async def generate(self, request: web.Request) -> web.StreamResponse:
        """``/v1/chat/completions`` and ``/v1/completions`` for every role."""
        body = await self._json(request)
        fault = await self.faults.before()
        if fault is not None:
            return fault
        prompt = parse_prompt(body)
        self.counts["images"] += len(prompt.images)
        if self.role == "encode":
            return await self._encode(prompt)
        kv = body.get("kv_transfer_params") or {}
        if not isinstance(kv, dict):
            raise wire.bad_request("kv_transfer_params must be an object", "kv_transfer_params")
        chat = request.path.endswith("chat/completions")
        base = request.headers.get("X-Request-Id") or str(body.get("request_id") or "") \
            or uuid.uuid4().hex
        job = Job(rid=("chatcmpl-" if chat else "cmpl-") + base, base_id=base, chat=chat,
                  prompt=prompt, max_tokens=self._max_tokens(body))
        if self.max_model_len and len(prompt) + job.max_tokens > self.max_model_len:
            raise wire.bad_request(
                f"This model's maximum context length is {self.max_model_len} tokens. However, "
                f"you requested {len(prompt) + job.max_tokens} tokens ({len(prompt)} in the "
                f"messages, {job.max_tokens} in the completion).", "max_tokens")
        try:
            job.waiter = self.slots.reserve()
        except QueueFull:
            self.metrics.rejected += 1
            return wire.queue_full(self.slots.waiting)
        self._register(job)
        try:
            return await self._run(request, body, job, kv)
        except (asyncio.CancelledError, ConnectionResetError):
            if job.finished:
                raise  # already counted; the client left during the last bytes
            self.metrics.aborted += 1
            print(f"request {job.rid} aborted after {job.produced} tokens", flush=True)
            raise
        finally:
            self._unregister(job)

    async def _run(self, request: web.Request, body: dict[str, Any], job: Job,
                   kv: dict[str, Any]) -> web.StreamResponse:
        """Slot, encode + prefill, then decode as a stream or one body."""
        assert job.waiter is not None
        job.running = await self.slots.wait(job.waiter)
        job.waiter = None
        kind = self._kind(kv)
        plan = Plan(0, 0, 0, 0, [])
        if job.running:  # else withdrawn from the queue by an abort: answer at once
            self.metrics.queue_time.observe(time.monotonic() - job.arrival)
            self.by_role[kind] += 1
            plan = self._plan(job, kind, kv, body)
            if not await self._pause(job, self.encode_s * plan.encoded
                                     + self.prefill_s * plan.computed):
                self.cache.insert(plan.hashes)
        extra = {"kv_transfer_params": self._kv_handle(request, job)} if kind == "prefill" \
            else {}
        use_cached = plan.cached + plan.transferred  # vLLM counts external KV as cached too
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, job, use_cached, include_usage)
        return await self._whole(job, use_cached, extra)

    def _plan(self, job: Job, kind: str, kv: dict[str, Any], body: dict[str, Any]) -> Plan:
        """Split the prompt into cached, transferred and computed tokens, and count them."""
        prompt, m = job.prompt, self.metrics
        hashes = block_hashes(prompt.tokens, self.cache.block_size) if self.cache.capacity \
            else []
        cached = self.cache.match(hashes, len(prompt))
        transferred = 0
        remote = kind == "decode" and bool(kv.get("do_remote_prefill"))
        if remote:
            transferred = max(0, self._remote_tokens(kv, len(prompt)) - cached)
        elif kind == "decode":
            m.kv_missing += 1
        encoded = 0  # a remote prefill's KV already holds the images
        if not remote:
            given = body.get("mm_hashes")
            reused = set(given) & set(prompt.images) if isinstance(given, list) else set()
            encoded = sum(1 for h in prompt.images if h not in reused)
            self.counts["mm_hashes_reused"] += len(prompt.images) - encoded
        m.prompt_tokens += len(prompt)
        if self.cache.capacity:
            m.prefix_cache_queries += len(prompt)
            m.prefix_cache_hits += cached
        m.kv_transferred_tokens += transferred
        m.images_encoded += encoded
        return Plan(cached, transferred, len(prompt) - cached - transferred, encoded, hashes)

    def _remote_tokens(self, kv: dict[str, Any], num_tokens: int) -> int:
        """Prompt tokens a prefill handle covers: its blocks' worth, or the whole prompt
        when it names none; never the last token, which decode recomputes (as vLLM)."""
        blocks = kv.get("remote_block_ids")
        covered = len(blocks) * self.cache.block_size if isinstance(blocks, list) else num_tokens
        return min(covered, num_tokens - 1)

    async def _stream(self, request: web.Request, job: Job, cached: int,
                      include_usage: bool) -> web.StreamResponse:
        """The role chunk (chat), one SSE chunk per decode step (a stall halfway if asked),
        the finish chunk, the usage chunk if asked, and ``[DONE]``; headers go out after
        prefill."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if job.chat:
            await resp.write(wire.sse(wire.role_chunk(job.rid, self.name)))
        due = time.monotonic()
        stall = self.faults.stall_mid_stream_s
        for i, word in enumerate(wire.words(job.max_tokens)):
            if i == job.max_tokens // 2 and stall:
                if await self._pause(job, stall):
                    break
                due += stall
            due += self.decode_s
            if await self._pause(job, due - time.monotonic()):
                break
            self._token(job)
            await resp.write(wire.sse(wire.chunk(job.rid, self.name, job.chat, word + " ",
                                                 None)))
        finish = self._finish(job)
        await resp.write(wire.sse(wire.chunk(job.rid, self.name, job.chat, "", finish)))
        if include_usage:
            use = wire.usage(len(job.prompt), job.produced, cached)
            await resp.write(wire.sse(wire.usage_chunk(job.rid, self.name, job.chat, use)))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _whole(self, job: Job, cached: int, extra: dict[str, Any]) -> web.Response:
        """The whole completion after all decode steps (or those done before an abort)."""
        start = time.monotonic()
        if not await self._pause(job, self.decode_s * job.max_tokens):
            count = job.max_tokens
        elif self.decode_s:
            count = min(job.max_tokens, int((time.monotonic() - start) / self.decode_s))
        else:
            count = 0
        if count:
            # Engine-side timing: the tokens came one per decode step after `start`.
            job.first_token_at = start + self.decode_s
            self.metrics.ttft.observe(job.first_token_at - job.arrival)
            self.metrics.itl.observe(self.decode_s, count - 1)
            job.last_token_at = start + self.decode_s * count
        job.produced = count
        self.metrics.generation_tokens += count
        finish = self._finish(job)
        body = wire.completion(job.rid, self.name, job.chat, " ".join(wire.words(count)),
                               finish, wire.usage(len(job.prompt), count, cached))
        return wire.json({**body, **extra})

    def _token(self, job: Job) -> None:
        """Count one streamed token and its timing."""
        now = time.monotonic()
        if job.last_token_at is None:
            job.first_token_at = now
            self.metrics.ttft.observe(now - job.arrival)
        else:
            self.metrics.itl.observe(now - job.last_token_at)
        job.last_token_at = now
        job.produced += 1
        self.metrics.generation_tokens += 1

    def _finish(self, job: Job) -> str:
        """The finish reason, counted, with the request's latency histograms."""
        job.finished = True
        finish = "abort" if job.aborted.is_set() else "length"
        self.metrics.finished[finish] += 1
        if finish == "abort":
            self.metrics.aborted += 1
        else:
            self.counts["completed"] += 1
        self.metrics.e2e.observe(time.monotonic() - job.arrival)
        if job.produced > 1 and job.first_token_at and job.last_token_at:
            self.metrics.tpot.observe((job.last_token_at - job.first_token_at)
                                      / (job.produced - 1))
        return finish

    def _kv_handle(self, request: web.Request, job: Job) -> dict[str, Any]:
        """What a prefill answers in ``kv_transfer_params`` (the NixlConnector's fields).

        Block ids are made up (a counter): the KV exists only as an idea, and a
        decode instance needs nothing but the handle's presence and length.
        """
        blocks = math.ceil(len(job.prompt) / self.cache.block_size)
        ids = list(range(self._next_block_id, self._next_block_id + blocks))
        self._next_block_id += blocks
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        # A TCP socket's name is (host, port, ...); a Unix socket's is its path.
        host, port = (sock[0], sock[1]) if isinstance(sock, tuple) else (sock or request.host,
                                                                          None)
        return {"do_remote_prefill": True, "do_remote_decode": False,
                "remote_engine_id": self.engine_id, "remote_block_ids": ids,
                "remote_host": host, "remote_port": port, "remote_request_id": job.rid,
                "tp_size": 1}

    async def _encode(self, prompt: Prompt) -> web.Response:
        """The encode role: ``--encode-ms-per-image`` per image, then the images' hashes."""
        if not prompt.images:
            raise wire.bad_request("an encode instance needs a request with image_url parts",
                                   "messages")
        try:
            fut = self.slots.reserve()
        except QueueFull:
            self.metrics.rejected += 1
            return wire.queue_full(self.slots.waiting)
        await self.slots.wait(fut)  # always granted: encode requests are never withdrawn
        try:
            self.by_role["encode"] += 1
            await asyncio.sleep(self.encode_s * len(prompt.images))
        finally:
            self.slots.release()
        self.metrics.images_encoded += len(prompt.images)
        self.counts["completed"] += 1
        return wire.json({"id": "encode-" + uuid.uuid4().hex, "object": "encode",
                          "created": int(time.time()), "model": self.name,
                          "mm_hashes": prompt.images, "num_images": len(prompt.images),
                          "encode_ms": self.encode_s * 1000 * len(prompt.images)})

    # -- helpers --------------------------------------------------------------

    def _kind(self, kv: dict[str, Any]) -> str:
        """The part this request plays: a P/D prefill, a decode, or all of it (pd)."""
        if self.role == "prefill" and kv.get("do_remote_decode"):
            return "prefill"
        return "decode" if self.role == "decode" else "pd"

    async def _pause(self, job: Job, seconds: float) -> bool:
        """Wait ``seconds`` unless aborted first; whether the job is aborted."""
        if job.aborted.is_set() or seconds <= 0:
            return job.aborted.is_set()
        try:
            await asyncio.wait_for(job.aborted.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _max_tokens(self, body: dict[str, Any]) -> int:
        value = body.get("max_tokens")
        if value is None:
            value = body.get("max_completion_tokens")
        if value is None:
            value = self.default_tokens
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise wire.bad_request("max_tokens must be a positive integer", "max_tokens")
        return value

    def _kv_usage(self) -> float:
        """Blocks held by running requests over the block pool (--prefix-cache-blocks)."""
        if not self.cache.capacity:
            return 0.0
        size = self.cache.block_size
        held = sum(math.ceil((len(j.prompt) + j.produced) / size)
                   for j in self.active if j.running)
        return min(1.0, held / self.cache.capacity)

    def _register(self, job: Job) -> None:
        self.active.add(job)
        for key in (job.rid, job.base_id):
            self.jobs.setdefault(key, job)

    def _unregister(self, job: Job) -> None:
        self.active.discard(job)
        if job.running:
            job.running = False
            self.slots.release()
        for key in (job.rid, job.base_id):
            if self.jobs.get(key) is job:
                del self.jobs[key]

    async def _json(self, request: web.Request) -> dict[str, Any]:
        return await wire.read_body(request, self.name)
