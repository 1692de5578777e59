"""``modelfleet admin``: users made straight in the store, for the first admin and for
recovery (these commands need the gateway's config and data, not a running gateway)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from modelfleet.cli_common import console, fail

admin_app = typer.Typer(help="Users in the gateway's store (run where the gateway runs).",
                        no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option(help="The gateway's YAML config file.")]
DataDirOpt = Annotated[Path | None, typer.Option(help="The gateway's data directory.")]


async def _create(config: Path | None, data_dir: Path | None, username: str, password: str,
                  role: str, reset: bool) -> str:
    from modelfleet.auth.passwords import hash_password
    from modelfleet.settings import load_settings
    from modelfleet.store import Store

    settings = load_settings(config=config, data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings)
    try:
        hashed = await hash_password(password)
        existing = await store.users.get_by_username(username)
        if existing is None:
            await store.users.create(username, hashed, role=role)
            return f"created {role} {username!r}"
        if not reset:
            fail(f"user {username!r} exists; --reset sets a new password")
        await store.users.set_password(existing.id, hashed)
        await store.users.set_role(existing.id, role)
        await store.users.set_disabled(existing.id, False)
        return f"reset {username!r} ({role})"
    finally:
        await store.close()


@admin_app.command("create")
def create(
    username: Annotated[str, typer.Option(help="User name.")] = "admin",
    password: Annotated[str | None, typer.Option(
        envvar="MODELFLEET_ADMIN_PASSWORD", help="Asked for when not given.")] = None,
    role: Annotated[str, typer.Option(help="admin or user.")] = "admin",
    reset: Annotated[bool, typer.Option(help="Set a new password for an existing user.")]
    = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a user (an admin by default); from then on the gateway requires tokens."""
    from modelfleet.errors import FleetError

    if role not in ("admin", "user"):
        fail("role must be admin or user")
    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        message = asyncio.run(_create(config, data_dir, username, password, role, reset))
    except FleetError as exc:
        fail(f"{exc.code}: {exc.message}")
    console.print(f"[green]{message}[/green]")
