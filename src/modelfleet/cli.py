"""The ``modelfleet`` command: ``serve`` runs the gateway; the other commands talk to a
running one through the SDK (``modelfleet.client``)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from modelfleet import __version__
from modelfleet.auth import redact
from modelfleet.cli_admin import admin_app
from modelfleet.cli_agent import agent, discovered_model
from modelfleet.cli_common import TokenOpt, UrlOpt, connect, console, fail, parse_assignments
from modelfleet.cli_disagg import endpoint_model, expand_list_flags
from modelfleet.cli_models import logs, models_app, start, stop
from modelfleet.client import DEFAULT_URL
from modelfleet.errors import ConfigError

app = typer.Typer(help="One OpenAI-compatible endpoint for a fleet of models.",
                  no_args_is_help=True, add_completion=False)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file.")] = None,
    model: Annotated[str | None, typer.Option(
        help="Serve this model (Hugging Face directory) instead of the defaults.")] = None,
    served_model_name: Annotated[str | None, typer.Option(
        help="The id clients use for --model.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Logs and state.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning…")] = None,
    encode_addr_list: Annotated[list[str] | None, typer.Option(
        help="Encoder instances started by hand (seed 000): host:port, URL or socket.")] = None,
    pd_addr_list: Annotated[list[str] | None, typer.Option(
        help="Prefill+decode instances started by hand.")] = None,
    prefill_addr_list: Annotated[list[str] | None, typer.Option(
        help="Prefill instances started by hand (P/D).")] = None,
    decode_addr_list: Annotated[list[str] | None, typer.Option(
        help="Decode instances started by hand (P/D).")] = None,
    proxy_addr: Annotated[Path | None, typer.Option(
        help="Also serve on this Unix socket.")] = None,
    allowed_local_media_path: Annotated[Path | None, typer.Option(
        help="file:// media URLs are read beneath this directory only.")] = None,
    metastore_client_config: Annotated[str | None, typer.Option(
        help='The metastore as JSON: {"metastore_client": "RedisMetastoreClient", '
             '"metastore_address": "redis://…"}; --model\'s instances are discovered '
             'there.')] = None,
) -> None:
    """Run the gateway in the foreground."""
    from modelfleet.api import server
    from modelfleet.api.app import create_app
    from modelfleet.fleet.defaults import default_models, model_from_path
    from modelfleet.metastore import parse_client_config
    from modelfleet.settings import load_settings

    if allowed_local_media_path is not None and not allowed_local_media_path.is_dir():
        console.print(f"[red]--allowed-local-media-path {allowed_local_media_path} is not a "
                      "directory[/red]", highlight=False)
        raise typer.Exit(2)
    if proxy_addr is not None and proxy_addr.exists() and not proxy_addr.is_socket():
        console.print(f"[red]--proxy-addr {proxy_addr} exists and is not a socket[/red]",
                      highlight=False)
        raise typer.Exit(2)
    media_path = str(allowed_local_media_path.resolve()) if allowed_local_media_path else None
    lists = {role: values for role, values in (
        ("encode", encode_addr_list), ("pd", pd_addr_list), ("prefill", prefill_addr_list),
        ("decode", decode_addr_list)) if values}
    try:
        settings = load_settings(**{"server.host": host, "server.port": port, "config": config,
                                    "data_dir": data_dir, "log_level": log_level,
                                    "media.allowed_local_media_path": media_path})
        if lists:  # seed 000: one model, its instances started by hand
            settings.models = [endpoint_model(model, served_model_name, lists)]
        if metastore_client_config:  # seed 000: instances registered in the metastore
            settings.redis_url = parse_client_config(metastore_client_config)
            if model and not lists:
                settings.models = [discovered_model(model, served_model_name)]
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from None
    if model and not lists and not metastore_client_config:
        settings.models = [model_from_path(model, served_model_name)]
    elif not settings.models:
        settings.models = default_models()
    redact.install()
    redact.add_secrets([settings.auth.admin_password, settings.auth.jwt_secret])
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_check_auth(settings))
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    _print_banner(settings)
    server.run(settings, create_app(settings), uds=str(proxy_addr) if proxy_addr else None)


async def _check_auth(settings: Any) -> None:
    """Refuse a non-loopback address while auth is off, before the server starts."""
    from modelfleet.auth.bootstrap import auth_configured, check_bind, ensure_admin
    from modelfleet.store import Store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings)
    try:
        await ensure_admin(settings, store)
        check_bind(settings, bool(settings.auth.admin_password)
                   or await auth_configured(store))
    finally:
        await store.close()


def _print_banner(settings: Any) -> None:
    table = Table(title=f"modelfleet {__version__} on "
                        f"http://{settings.server.host}:{settings.server.port}")
    for col in ("model", "engine", "aliases", "auto start", "source"):
        table.add_column(col)
    for m in settings.models:
        table.add_row(m.name, m.engine, ", ".join(m.aliases), "yes" if m.auto_start else "no",
                      m.model)
    console.print(table)


app.add_typer(models_app, name="models")
app.add_typer(admin_app, name="admin")
app.command("logs")(logs)
app.command("agent")(agent)
# The first commands of the CLI, kept as short forms of ``models start|stop``.
app.command("start", help="Start a model and follow it until it is ready (models start).")(
    start)
app.command("stop", help="Stop a model (models stop).")(stop)

config_app = typer.Typer(help="Configuration: check a file, read or change the gateway's.",
                         no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="The YAML file to check.")]) -> None:
    """Validate a config file: every problem names the file, the model and the field."""
    from modelfleet.engines import adapter_for
    from modelfleet.settings import load_settings

    try:
        settings = load_settings(config=file)
        adapters = {m.name: adapter_for(m.engine) for m in settings.models}
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    table = Table(title=f"{file}: {len(settings.models)} model(s), valid")
    for col in ("model", "engine", "installed here", "aliases", "profiles"):
        table.add_column(col)
    for m in settings.models:
        table.add_row(m.name, m.engine, "yes" if adapters[m.name].installed() else "no",
                      ", ".join(m.aliases), ", ".join(p.name for p in m.profiles) or "-")
    console.print(table)


@config_app.command("get")
def config_get(
    key: Annotated[str | None, typer.Argument(
        help="One setting; dots reach inside, e.g. alert_thresholds.gpu_utilization_high.")]
    = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Print the gateway's runtime configuration, or one setting of it."""
    with connect(url, token) as client:
        value: Any = client.get_config().model_dump(mode="json")
    for part in key.split(".") if key else []:
        if not isinstance(value, dict) or part not in value:
            fail(f"no setting {key!r}")
        value = value[part]
    if isinstance(value, dict | list):
        console.print_json(data=value)
    else:
        console.print(str(value), markup=False, highlight=False)


@config_app.command("set")
def config_set(
    assignments: Annotated[list[str], typer.Argument(
        help="KEY=VALUE…; values are JSON when they parse, dots reach inside.")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Change runtime settings, e.g. ``max_concurrent_models=15
    alert_thresholds.gpu_utilization_high=85``; prints the configuration after it."""
    fields = parse_assignments(assignments)
    with connect(url, token) as client:
        config = client.update_config(**fields)
    console.print_json(data=config.model_dump(mode="json"))


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


def main() -> None:
    app(args=expand_list_flags(sys.argv[1:]))  # seed 000's ``--pd-addr-list A B``
