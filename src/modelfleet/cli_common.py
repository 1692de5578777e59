"""What the CLI's client commands share: the options, the SDK client, error lines and
``KEY=VALUE`` arguments."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from modelfleet.client import Client, ModelfleetError

console = Console()

UrlOpt = Annotated[str, typer.Option("--url", envvar="MODELFLEET_URL",
                                     help="The gateway to talk to.")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="MODELFLEET_TOKEN",
                                              help="Bearer token or API key.")]

def fail(line: str) -> NoReturn:
    """Print ``line`` in red and exit with status 1."""
    console.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def connect(url: str, token: str | None) -> Iterator[Client]:
    """An SDK client for one command; any SDK error (an unreachable gateway included)
    becomes one ``CODE: message`` line and exit status 1, never a traceback."""
    try:
        with Client(url, token=token) as client:
            yield client
    except ModelfleetError as exc:
        fail(str(exc))


def _value(text: str) -> Any:
    """JSON when it parses (numbers, booleans, lists, objects), the plain string else."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` → ``{"a": {"b": 1}, "c": "x"}``: dots make nested keys."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE")
        *parents, leaf = key.strip().split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise typer.BadParameter(f"{key!r}: {part!r} is already set to a value")
            node = child
        node[leaf] = _value(text)
    return out
