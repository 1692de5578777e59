"""A real PostgreSQL for tests: throwaway databases on the server at
``MODELFLEET_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``,
an admin connection).

An unreachable server FAILS the tests that need it, with the reason: CI starts
PostgreSQL, and a store that was only tested on SQLite is not tested.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

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


@contextmanager
def pg_database_url() -> Iterator[str]:
    """A new database for the ``with`` block (from sync code); dropped after it."""
    name, url = run_in_thread(create_pg_database())
    try:
        yield url
    finally:
        run_in_thread(drop_pg_database(name))
