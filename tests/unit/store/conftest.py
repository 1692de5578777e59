"""Store fixtures: every test that takes ``store`` (or ``url``) runs on SQLite and on a real
PostgreSQL (see ``tests/pg.py``).

Each test module gets a database of its own, ``mf_test_<random>``, created before its
first test, emptied before each test and dropped after its last, so runs never collide
and leave nothing behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from modelfleet.settings import Settings
from modelfleet.store import Store
from modelfleet.store.tables import Base
from tests.pg import create_pg_database, drop_pg_database, pg_database_url


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
    with pg_database_url() as pg_url:
        yield pg_url


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
