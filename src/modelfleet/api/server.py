"""Run the gateway under uvicorn, telling it when shutdown begins.

uvicorn waits for open connections before the lifespan ends, so a log stream
would be cut without its ``stream_end``; the server below ends those streams as
soon as it stops accepting connections.
"""

from __future__ import annotations

import socket

import uvicorn

from modelfleet.api.app import GatewayApp
from modelfleet.settings import Settings

GRACEFUL_SHUTDOWN_S = 5


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: GatewayApp):
        super().__init__(config)
        self.gateway = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gateway.begin_shutdown()
        await super().shutdown(sockets)


def run(settings: Settings, app: GatewayApp) -> None:
    config = uvicorn.Config(
        app, host=settings.server.host, port=settings.server.port, loop="uvloop",
        http="httptools", lifespan="on", access_log=False,
        log_level=settings.log_level, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    _Server(config, app).run()
