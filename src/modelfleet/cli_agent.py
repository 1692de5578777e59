"""``modelfleet agent``: run engines on this host for the gateways of a fleet."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from aiohttp import web

from modelfleet.cli_common import console
from modelfleet.errors import ConfigError

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def discovered_model(model: str, served_model_name: str | None = None) -> Any:
    """``serve --model M --metastore-client-config …`` (seed 000): one model whose
    instances agents register in the metastore. A path names it by its last component
    (the name the agents' engines serve) and is also an alias, so clients may send
    either."""
    from pathlib import PurePosixPath

    from modelfleet.settings import ModelConfig

    name = served_model_name or PurePosixPath(model).name or model
    return ModelConfig(name=name, engine="external", model=model, discover=True,
                       aliases=[model] if model != name else [], idle_timeout=0)


def agent(
    redis_url: Annotated[str | None, typer.Option(
        help="The fleet's Redis (MODELFLEET_REDIS_URL).")] = None,
    metastore_client_config: Annotated[str | None, typer.Option(
        help='JSON: {"metastore_client": "RedisMetastoreClient", '
             '"metastore_address": "redis://…"}.')] = None,
    advertise_host: Annotated[str, typer.Option(
        help="The address gateways reach this host's engines at; engines bind it.")
    ] = "127.0.0.1",
    node_id: Annotated[str | None, typer.Option(
        help="This agent's id in the fleet (default: host name and control port).")] = None,
    port: Annotated[int, typer.Option(help="Port of the control API (logs); 0: any.")] = 0,
    config: Annotated[Path | None, typer.Option(
        help="YAML: models this agent always runs (for gateways that discover them).")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Engine logs.")] = None,
    ttl: Annotated[float | None, typer.Option(
        help="Seconds a record lives unless renewed.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning…")] = None,
) -> None:
    """Run the supervisor on this host: launch assigned models, register them in Redis."""
    from modelfleet.metastore import parse_client_config
    from modelfleet.settings import load_settings

    try:
        if metastore_client_config:
            redis_url = parse_client_config(metastore_client_config)
        settings = load_settings(**{"redis_url": redis_url, "config": config,
                                    "data_dir": data_dir, "log_level": log_level,
                                    "fleet.ttl_s": ttl, "fleet.node_id": node_id,
                                    "fleet.advertise_host": advertise_host})
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from None
    if not settings.redis_url:
        console.print("[red]an agent needs the fleet's Redis:[/red] --redis-url or "
                      "--metastore-client-config")
        raise typer.Exit(2)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_agent(settings, advertise_host, port))


async def run_agent(settings: Any, host: str, port: int) -> None:
    """Serve the control API and run the agent until SIGTERM or SIGINT."""
    from modelfleet.agent.control import build_control
    from modelfleet.agent.runner import Agent
    from modelfleet.fleet.coordinator import default_node_id
    from modelfleet.gateway.relay import make_session
    from modelfleet.metastore import open_metastore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = settings.fleet.agent_token
    bind = host if token or host in LOOPBACK else "127.0.0.1"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    session = make_session(settings.timeouts)
    metastore = open_metastore(settings.redis_url, prefix=settings.redis_prefix)
    runner: web.AppRunner | None = None
    try:
        agent_ = Agent(settings, metastore, session, node_id="pending", host=host)
        runner = web.AppRunner(build_control(agent_, token), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, bind, port)
        await site.start()
        actual = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        agent_.node_id = settings.fleet.node_id or default_node_id(actual)
        agent_.control_url = f"http://{bind}:{actual}"
        print(f"agent {agent_.node_id} on {host}, control API {agent_.control_url}",
              flush=True)
        await agent_.run(stop)
    finally:
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        await session.close()
