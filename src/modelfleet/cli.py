"""The ``modelfleet`` command: thin, on the same code the API runs."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from modelfleet import __version__
from modelfleet.errors import ConfigError

app = typer.Typer(help="One OpenAI-compatible endpoint for a fleet of models.",
                  no_args_is_help=True, add_completion=False)
console = Console()

UrlOpt = Annotated[str, typer.Option("--url", envvar="MODELFLEET_URL",
                                     help="The gateway to talk to.")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="MODELFLEET_TOKEN",
                                              help="Bearer token or API key.")]
DEFAULT_URL = "http://127.0.0.1:8000"


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
) -> None:
    """Run the gateway in the foreground."""
    import uvicorn

    from modelfleet.api.app import create_app
    from modelfleet.fleet.defaults import default_models, model_from_path
    from modelfleet.settings import load_settings

    try:
        settings = load_settings(**{"server.host": host, "server.port": port, "config": config,
                                    "data_dir": data_dir, "log_level": log_level})
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from None
    if model:
        settings.models = [model_from_path(model, served_model_name)]
    elif not settings.models:
        settings.models = default_models()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _print_banner(settings)
    uvicorn.run(create_app(settings), host=settings.server.host, port=settings.server.port,
                loop="uvloop", http="httptools", lifespan="on", access_log=False,
                log_level=settings.log_level.lower(), timeout_graceful_shutdown=5)


def _print_banner(settings: Any) -> None:
    table = Table(title=f"modelfleet {__version__} on "
                        f"http://{settings.server.host}:{settings.server.port}")
    for col in ("model", "engine", "aliases", "auto start", "source"):
        table.add_column(col)
    for m in settings.models:
        table.add_row(m.name, m.engine, ", ".join(m.aliases), "yes" if m.auto_start else "no",
                      m.model)
    console.print(table)


def _client(url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(10, read=600))


def _call(client: httpx.Client, method: str, path: str) -> dict[str, Any]:
    try:
        resp = client.request(method, path)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {client.base_url}: {exc}[/red]")
        raise typer.Exit(1) from None
    body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") \
        else {}
    if resp.status_code >= 400:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        console.print(f"[red]{resp.status_code} {err.get('code', '')}: "
                      f"{err.get('message', resp.text)}[/red]")
        raise typer.Exit(1)
    return body


@app.command("models")
def models_cmd(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """A table of the gateway's models, engines and states."""
    with _client(url, token) as client:
        info = _call(client, "GET", "/api/models/all-models/info")
    table = Table(title=f"models on {url}")
    for col in ("model", "engine", "mode", "status", "pid", "pending", "idle s", "aliases"):
        table.add_column(col)
    colours = {"ready": "green", "starting": "yellow", "failed": "red"}
    for m in info["models"].values():
        status = f"[{colours.get(m['status'], 'white')}]{m['status']}[/]"
        table.add_row(m["model_name"], m["engine"], m["mode"], status, str(m["pid"] or "-"),
                      str(m["pending_requests"]), str(m["idle_time_sec"]),
                      ", ".join(m["aliases"]))
    console.print(table)


@app.command()
def start(name: str, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Start a model, showing its progress until it is ready."""
    import threading

    result: dict[str, Any] = {}

    def run() -> None:
        with _client(url, token) as client:
            try:
                result["body"] = _call(client, "POST", f"/api/models/{name}/start?wait=true")
            except typer.Exit as exc:
                result["exit"] = exc

    worker = threading.Thread(target=run, daemon=True)
    begun = time.monotonic()
    worker.start()
    with _client(url, token) as client, console.status(f"starting {name}…") as status:
        while worker.is_alive():
            worker.join(0.3)
            try:
                info = client.get(f"/api/models/{name}/info").json().get("model", {})
            except (httpx.HTTPError, ValueError):
                continue
            status.update(f"{name}: {info.get('status')} ({time.monotonic() - begun:.0f}s) "
                          f"[dim]{(info.get('last_log') or '')[:80]}[/dim]")
    if "exit" in result:
        raise result["exit"]
    console.print(f"[green]{name} ready[/green] in {time.monotonic() - begun:.1f}s")


@app.command()
def stop(name: str, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Stop a model."""
    with _client(url, token) as client:
        body = _call(client, "POST", f"/api/models/{name}/stop?wait=true")
    console.print(body.get("message", "stopped"))


config_app = typer.Typer(help="Configuration files.", no_args_is_help=True)
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


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


def main() -> None:
    app()
