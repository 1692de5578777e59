"""Run the gateway under uvicorn, telling it when shutdown begins.

uvicorn waits for open connections before the lifespan ends, so a log stream
would be cut without its ``stream_end``; the server below ends those streams as
soon as it stops accepting connections.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

import uvicorn

from modelfleet.api.app import GatewayApp
from modelfleet.errors import ConfigError
from modelfleet.settings import Settings

GRACEFUL_SHUTDOWN_S = 5


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: GatewayApp, uds: str | None = None):
        super().__init__(config)
        self.gateway = app
        self.uds = uds

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gateway.begin_shutdown()
        await super().shutdown(sockets)
        if self.uds:  # here: uvicorn re-raises the stop signal once serving ends
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.uds)


def run(settings: Settings, app: GatewayApp, uds: str | None = None) -> None:
    """Serve on the configured host and port, and also on the Unix socket ``uds``
    (seed 000's ``--proxy-addr``) when one is given."""
    config = uvicorn.Config(
        app, host=settings.server.host, port=settings.server.port, loop="uvloop",
        http="httptools", lifespan="on", access_log=False,
        log_level=settings.log_level, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    if uds is None:
        _Server(config, app).run()
        return
    sockets = [config.bind_socket(), unix_socket(uds)]
    try:
        _Server(config, app, uds).run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()


def unix_socket(path: str) -> socket.socket:
    """A listening-ready socket at ``path``; a socket left there by an earlier run is
    replaced, any other file is an error. Mode 0666, as uvicorn's own ``--uds``."""
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"{path} exists and is not a socket")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o666)
    sock.set_inheritable(True)
    return sock
