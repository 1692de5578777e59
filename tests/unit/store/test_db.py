"""The Database: URLs, migrations, SQLite pragmas, persistence, connection failures."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from modelfleet.errors import ConfigError
from modelfleet.settings import Settings
from modelfleet.store import Store, database_url, open
from modelfleet.store.db import normalise_url
from modelfleet.store.tables import Base

TABLES = {
    "models", "users", "api_keys", "alert_rules", "alert_events", "settings_kv",
    "request_log", "metric_rollups", "tasks",
}


def test_database_url_defaults_to_sqlite_in_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert database_url(settings) == f"sqlite+aiosqlite:///{tmp_path.resolve()}/modelfleet.db"


@pytest.mark.parametrize(
    "raw",
    ["postgres://u:p@h:5/db", "postgresql://u:p@h:5/db", "postgresql+psycopg2://u:p@h:5/db"],
)
def test_database_url_rewrites_postgres_to_asyncpg(raw: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=raw)
    assert database_url(settings) == "postgresql+asyncpg://u:p@h:5/db"


def test_database_url_rewrites_sqlite_to_aiosqlite() -> None:
    assert normalise_url("sqlite:////x/y.db") == "sqlite+aiosqlite:////x/y.db"


@pytest.mark.parametrize("raw", ["mysql://h/db", "not a url"])
def test_database_url_rejects_what_it_cannot_serve(raw: str) -> None:
    with pytest.raises(ConfigError):
        normalise_url(raw)


async def test_open_default_makes_a_wal_sqlite_file_with_foreign_keys(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "new" / "dir")
    db = await open(settings)
    try:
        assert settings.sqlite_path.is_file()
        async with db.read() as s:
            assert (await s.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await s.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await db.close()


@pytest.mark.parametrize("fresh_url", ["sqlite", "postgresql"], indirect=True)
async def test_migrations_create_every_table_and_rerun_as_a_no_op(
    fresh_url: str, settings: Settings
) -> None:
    store = await Store.open(settings, url=fresh_url)
    try:
        assert set(await store.db.table_names()) == TABLES | {"alembic_version"}
        await store.models.create({"name": "kept", "engine": "vllm", "model": "/w"})
        await store.db.migrate()
        await store.db.migrate()
        assert set(await store.db.table_names()) == TABLES | {"alembic_version"}
        async with store.db.read() as s:
            versions = (await s.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert [v[0] for v in versions] == ["0003"]
        assert (await store.models.get("kept")).engine == "vllm"
    finally:
        await store.close()
    reopened = await Store.open(settings, url=fresh_url)  # open migrates again: still fine
    await reopened.close()


async def test_migration_matches_the_table_classes(store: Store) -> None:
    """Guards against tables.py and the hand-written revision drifting apart."""

    def diff(conn: object) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(context, Base.metadata))

    async with store.db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_data_survives_closing_and_reopening(url: str, settings: Settings) -> None:
    first = await Store.open(settings, url=url)
    model = await first.models.create({"name": "m", "framework": "vllm", "model": "/w"})
    user = await first.users.create("ann", "hash", role="admin")
    _, secret = await first.keys.create(user.id, "ci")
    await first.settings.put("log_level", "DEBUG")
    await first.close()

    second = await Store.open(settings, url=url)
    try:
        assert (await second.models.get(model.id)).name == "m"
        assert (await second.users.get_by_username("ann")) is not None
        key = await second.keys.get_by_secret(secret)
        assert key is not None and key.owner_id == user.id
        assert await second.settings.get("log_level") == "DEBUG"
    finally:
        await second.close()


async def test_unreachable_postgres_is_a_config_error_without_the_password(
    settings: Settings,
) -> None:
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConfigError) as caught:
        await open(settings, url=f"postgresql://u:hunter2@127.0.0.1:{port}/x")
    assert "hunter2" not in caught.value.message
    assert f"127.0.0.1:{port}" in caught.value.message


async def test_concurrent_writers_do_not_fail(store: Store) -> None:
    """Regression: read-then-write transactions on SQLite must wait for the write lock
    (BEGIN IMMEDIATE) rather than fail with "database is locked"."""

    async def one(i: int) -> None:
        row = await store.models.create({"name": f"m{i}", "engine": "vllm", "model": "/w"})
        await store.models.update(row.id, {"priority": i})
        await store.tasks.create("start", model=row.name)

    await asyncio.gather(*(one(i) for i in range(20)))
    rows, total = await store.models.list(size=100)
    assert total == 20
    assert sorted(r.priority for r in rows) == list(range(20))


def test_head_revision_is_alembics_head() -> None:
    """The shortcut that skips Alembic on a migrated store reads the newest migration
    from the file names: they must agree with Alembic's own head."""
    from alembic.script import ScriptDirectory

    from modelfleet.store.db import alembic_config, head_revision

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
