"""Store fixtures: every test that takes ``store`` (or ``url``) runs on SQLite and on a real
PostgreSQL.

PostgreSQL is reached at ``MODELFLEET_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``, an admin connection). Each test module
gets a database of its own, ``mf_test_<random>``, created before its first test,
emptied before each test and dropped after its last, so runs never collide and leave
nothing behind. An unreachable server FAILS those tests with
the reason: CI starts PostgreSQL, and a store that was only tested on SQLite is not
tested.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from modelfleet.settings import Settings
from modelfleet.store import Store
from modelfleet.store.tables import Base

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get(
    "MODELFLEET_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    pytest.fail(
        f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({reason}). Start it, or point "
        "MODELFLEET_TEST_POSTGRES_URL at an admin connection; the PostgreSQL store tests "
        "never skip.",
        pytrace=False,
    )


async def create_pg_database() -> tuple[str, str]:
    """A new empty database: (its name, its URL)."""
    name = f"mf_test_{secrets.token_hex(6)}"
    conn = await _admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    return name, url


async def drop_pg_database(name: str) -> None:
    conn = await _admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a loop of its own, away from the tests' loops (module fixtures)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def wipe(url: str) -> None:
    """Empty every store table of a database, children first (DELETE: TRUNCATE is ~10x
    slower on tables this small)."""
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(
        hide_password=False), timeout=10)
    try:
        if await conn.fetchval("SELECT to_regclass('public.alembic_version')") is None:
            return  # not migrated yet
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(f'DELETE FROM "{table.name}"')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """One database per test module (creating one costs ~0.5 s); dropped at its end."""
    name, pg_url = run_in_thread(create_pg_database())
    try:
        yield pg_url
    finally:
        run_in_thread(drop_pg_database(name))


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to a database with no rows on each backend: a new SQLite file, or this
    module's PostgreSQL database emptied (its schema stays, migrated or not)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    pg_url: str = request.getfixturevalue("pg_database")
    await wipe(pg_url)
    return pg_url


@pytest.fixture
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Like ``url`` but never migrated: a new SQLite file or a new PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    name, pg_url = await create_pg_database()
    try:
        yield pg_url
    finally:
        await drop_pg_database(name)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
async def store(url: str, settings: Settings) -> AsyncIterator[Store]:
    """An opened (migrated) store on each backend."""
    opened = await Store.open(settings, url=url)
    try:
        yield opened
    finally:
        await opened.close()
