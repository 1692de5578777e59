"""The simulator's aiohttp application: its routes, and the ones that need no engine state."""

from __future__ import annotations

import argparse

from aiohttp import web

from modelfleet.engines.sim import wire
from modelfleet.engines.sim.engine import Simulator

SIMULATOR = web.AppKey("simulator", Simulator)


def build_app(args: argparse.Namespace) -> web.Application:
    """The application of one simulated engine (``args``: see ``simulator.py``);
    its Simulator is ``app[SIMULATOR]``."""
    sim = Simulator(args)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[SIMULATOR] = sim
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/stats", sim.get_stats)
    app.router.add_get("/metrics", sim.get_metrics)
    app.router.add_post("/v1/chat/completions", sim.generate)
    app.router.add_post("/v1/completions", sim.generate)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/abort_requests", sim.abort_requests)
    app.router.add_post("/start_profile", sim.start_profile)
    app.router.add_post("/stop_profile", sim.stop_profile)
    return app


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def models(request: web.Request) -> web.Response:
    name = request.app[SIMULATOR].name
    return web.json_response({"object": "list", "data": [
        {"id": name, "object": "model", "created": 0, "owned_by": "simulator"}]})


async def tokenize(request: web.Request) -> web.Response:
    """``{"prompt": "a bb ccc"}`` → ``{"tokens": [1, 2, 3], "count": 3, ...}``: a
    made-up id per word (its length), the words counted as generation counts them."""
    body = await wire.read_body(request, request.app[SIMULATOR].name)
    words = str(body.get("prompt", "")).split()
    return web.json_response({"tokens": [len(w) for w in words], "count": len(words),
                              "max_model_len": 4096})


async def embeddings(request: web.Request) -> web.Response:
    name = request.app[SIMULATOR].name
    body = await wire.read_body(request, name)
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        raise wire.bad_request("input must be a string or a list", "input")
    data = [{"object": "embedding", "index": i, "embedding": wire.vector(str(t))}
            for i, t in enumerate(inputs)]
    tokens = sum(len(str(t).split()) for t in inputs)
    return wire.json({"object": "list", "data": data, "model": name,
                      "usage": wire.usage(tokens, 0)})
