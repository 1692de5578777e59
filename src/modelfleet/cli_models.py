"""``modelfleet models …`` and ``modelfleet logs``: the model commands, on the SDK."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelfleet.cli_common import TokenOpt, UrlOpt, connect, console, fail, parse_assignments
from modelfleet.client import DEFAULT_URL, Client, LogLine, Model, NotFoundError, Task

POLL_S = 0.25
COLOURS = {"ready": "green", "starting": "yellow", "stopping": "yellow", "failed": "red",
           "stopped": "dim"}

models_app = typer.Typer(help="The gateway's models: list, add, show, start, stop, remove.",
                         invoke_without_command=True)

NameArg = Annotated[str, typer.Argument(help="Model id, name or alias.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Kill after a short grace.")]
TimeoutOpt = Annotated[float | None, typer.Option(
    "--timeout", help="Fail the task if it is not done in this many seconds.")]


def _status(status: str) -> str:
    return f"[{COLOURS.get(status, 'white')}]{escape(status)}[/]"


@models_app.callback()
def models_root(ctx: typer.Context, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Manage the gateway's models; with no command, list them."""
    if ctx.invoked_subcommand is None:
        list_models(url=url, token=token)


@models_app.command("list")
def list_models(
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    status: Annotated[str | None, typer.Option(help="running, stopped, error…")] = None,
    engine: Annotated[str | None, typer.Option("--engine", "--framework")] = None,
    tag: Annotated[str | None, typer.Option(help="Only models with this tag.")] = None,
) -> None:
    """A table of the models, their engines and states."""
    with connect(url, token) as client:
        models = client.list_all_models(status=status, framework=engine, tag=tag)
    table = Table(title=f"models on {url}")
    for col in ("model", "engine", "status", "pid", "pending", "aliases", "tags", "id"):
        table.add_column(col)
    for m in models:
        usage = m.resource_usage
        table.add_row(escape(m.name), m.engine or "-", _status(m.status),
                      str(usage.get("pid") or "-"), str(usage.get("pending_requests", "-")),
                      escape(", ".join(m.aliases)), escape(", ".join(m.tags)), m.id)
    console.print(table)


def _spec_file(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(path.read_text())  # JSON is YAML too
    except (OSError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--file") from None
    if not isinstance(spec, dict):
        raise typer.BadParameter(f"not a mapping of model fields: {path}", param_hint="--file")
    return spec


@models_app.command("add")
def add(
    name: Annotated[str | None, typer.Argument(help="The model's name (or 'name' in --file).")]
    = None,
    engine: Annotated[str | None, typer.Option(
        "--engine", "--framework", "-e", help="vllm, llama.cpp, sglang, tgi, builtin…")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="The weights: a path or a hub id.")] = None,
    alias: Annotated[list[str] | None, typer.Option("--alias", "-a", help="Repeatable.")]
    = None,
    auto_start: Annotated[bool, typer.Option("--auto-start", help="Start with the gateway.")]
    = False,
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", help="KEY=VALUE engine setting (JSON values); repeatable.")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="A YAML or JSON file of model fields; options win over it.")]
    = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Add a model to the gateway (it starts on first use, or with `models start`)."""
    fields = _spec_file(file) if file else {}
    if engine:
        fields.pop("framework", None)
        fields["engine"] = engine
    given = {"name": name, "model": model, "aliases": alias or None,
             "auto_start": True if auto_start else None}
    fields.update({k: v for k, v in given.items() if v is not None})
    if config:
        fields["config"] = {**(fields.get("config") or {}), **parse_assignments(config)}
    if not fields.get("name"):
        raise typer.BadParameter("give NAME or a 'name' in --file", param_hint="NAME")
    with connect(url, token) as client:
        created = client.create_model(**fields)
    console.print(f"[green]added {escape(created.name)}[/green] ({created.id}, "
                  f"{created.engine}, {_status(created.status)})")


def _detail_rows(model: Model, info: dict[str, Any]) -> list[tuple[str, str]]:
    usage, stats = model.resource_usage, model.performance_stats
    rows = [
        ("id", model.id), ("engine", model.engine or "-"), ("weights", model.model or "-"),
        ("status", _status(model.status)), ("health", model.health or "-"),
        ("aliases", ", ".join(model.aliases) or "-"), ("tags", ", ".join(model.tags) or "-"),
        ("priority", str(model.priority)), ("auto start", "yes" if model.auto_start else "no"),
        ("source", model.source or "-"), ("created", model.created_at or "-"),
        ("pid", str(usage.get("pid") or "-")), ("mode", str(info.get("mode", "-"))),
        ("pending", str(usage.get("pending_requests", 0))),
        ("idle s", str(info.get("idle_time_sec", "-"))),
        ("requests", f"{stats.get('requests', 0)} ({stats.get('failed', 0)} failed)"),
        ("failure", model.failure_reason or "-"),
        ("last log", info.get("last_log") or "-"),
        ("config", json.dumps(model.config, ensure_ascii=False)),
    ]
    return [(k, v if k == "status" else escape(v)) for k, v in rows]


@models_app.command("show")
def show(name: NameArg, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """A model's settings and live state."""
    with connect(url, token) as client:
        model = client.get_model(name)
        try:
            info = client.model_info(model.name).model_dump()
        except NotFoundError:  # stored, but its config no longer validates
            info = {}
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in _detail_rows(model, info):
        table.add_row(key, value)
    console.print(Panel(table, title=escape(model.display_name or model.name), expand=False))


def follow(client: Client, task: Task, name: str) -> Task:
    """Poll ``task`` until it is over, showing the model's status, the time taken and
    its last log line; the finished task is returned."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        bar = progress.add_task(f"{task.kind} {escape(name)}", total=None)
        while not task.done:
            time.sleep(POLL_S)
            task = client.get_task(task.id)
            info = client.model_info(name)
            last = escape((info.last_log or "")[:100])
            progress.update(bar, description=f"{escape(name)}: {_status(info.status)} "
                                             f"[dim]{last}[/dim]")
    return task


def _lifecycle(kind: str, name: str, force: bool, timeout: float | None, url: str,
               token: str | None) -> None:
    begun = time.monotonic()
    with connect(url, token) as client:
        actions = {"start": client.start_model, "stop": client.stop_model,
                   "restart": client.restart_model}
        task = actions[kind](name, force=force, timeout=timeout)
        model = task.model or name
        task = follow(client, task, model)
    if not task.succeeded:
        fail(f"{kind} of {model} failed: {task.message}")
    state = "stopped" if kind == "stop" else "ready"
    console.print(f"[green]{escape(model)} {state}[/green] in {time.monotonic() - begun:.1f}s")


@models_app.command("start")
def start(name: NameArg, timeout: TimeoutOpt = None, url: UrlOpt = DEFAULT_URL,
          token: TokenOpt = None) -> None:
    """Start a model and follow it until it is ready (exit 1 if it fails)."""
    _lifecycle("start", name, False, timeout, url, token)


@models_app.command("stop")
def stop(name: NameArg, force: ForceOpt = False, url: UrlOpt = DEFAULT_URL,
         token: TokenOpt = None) -> None:
    """Stop a model."""
    _lifecycle("stop", name, force, None, url, token)


@models_app.command("restart")
def restart(name: NameArg, force: ForceOpt = False, timeout: TimeoutOpt = None,
            url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Stop a model, start it again and follow it until it is ready."""
    _lifecycle("restart", name, force, timeout, url, token)


@models_app.command("rm")
def remove(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Stop a model and remove it from the gateway."""
    if not yes:
        typer.confirm(f"remove model {name}?", abort=True)
    with connect(url, token) as client:
        ack = client.delete_model(name)
    console.print(ack.message or f"removed {name}", markup=False, highlight=False)


def _print_line(line: LogLine) -> None:
    stamp = line.timestamp.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    level = f"{line.level:<7} " if line.level else ""
    console.print(f"{stamp} {level}{line.message}", markup=False, highlight=False,
                  soft_wrap=True)


def logs(
    model: Annotated[str, typer.Argument(help="Model id, name or alias.")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many past lines.")] = 100,
    follow_log: Annotated[bool, typer.Option(
        "--follow", "-f", help="Then print new lines as they come, until Ctrl-C.")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """A model's engine log: the last lines, and with -f the new ones as they come."""
    with connect(url, token) as client:
        if not follow_log:
            for line in client.logs(model, lines=lines):
                _print_line(line)
            return
        try:
            for event in client.stream_logs(model, lines=lines):
                if event.log is not None:
                    _print_line(event.log)
                elif event.final:
                    console.print(event.message or event.type, style="yellow", markup=False)
        except KeyboardInterrupt:
            pass
