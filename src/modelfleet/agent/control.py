"""The agent's control API: its health and its engines' logs, for gateways.

``GET /health`` → ``{"node", "models": {name: state}}``;
``GET /models/{name}/logs?lines=N`` → ``{"model", "node", "lines": [{"timestamp",
"message"}]}`` (N ≤ 10,000). With ``fleet.agent_token`` set every request must
carry it as a bearer token; without one the API listens on loopback only.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from modelfleet.agent.runner import Agent

MAX_LINES = 10_000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_control(agent: Agent, token: str | None) -> web.Application:
    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _error(401, "a valid agent token is required", "UNAUTHORIZED")
        return await handler(request)

    async def health(request: web.Request) -> web.Response:
        models = {name: run.model.state.value for name, run in agent.running.items()}
        return web.json_response({"status": "healthy", "node": agent.node_id,
                                  "models": models})

    async def logs(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        run = agent.running.get(name)
        if run is None:
            return _error(404, f"model {name!r} does not run on {agent.node_id}",
                          "MODEL_NOT_FOUND")
        try:
            count = int(request.query.get("lines", "200"))
        except ValueError:
            return _error(400, "lines must be an integer", "INVALID_REQUEST")
        count = max(1, min(count, MAX_LINES))
        lines = [{"timestamp": line.timestamp, "message": line.message}
                 for line in run.model.log.tail(count)]
        return web.json_response({"model": name, "node": agent.node_id, "lines": lines})

    app = web.Application(middlewares=[check_token])
    app.router.add_get("/health", health)
    app.router.add_get("/models/{name}/logs", logs)
    return app


def _error(status: int, message: str, code: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "agent_error",
                                        "code": code, "param": None, "details": None}},
                             status=status)
