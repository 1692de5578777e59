"""The database: one async engine, its sessions, and the migrations applied at start.

    db = await open(settings)          # resolves the URL, connects, migrates to head
    async with db.read() as s: ...     # a session for queries
    async with db.write() as s: ...    # a session that commits on success, rolls back on error
    await db.close()

URLs: ``database_url`` unset means ``sqlite+aiosqlite:///{data_dir}/modelfleet.db``;
``postgres://``, ``postgresql://`` and ``postgresql+<driver>://`` are rewritten to
``postgresql+asyncpg://``, and ``sqlite://`` to ``sqlite+aiosqlite://``.

SQLite runs in WAL mode with foreign keys on, and SQLAlchemy (not the sqlite3 module)
emits BEGIN: ``write()`` sessions begin IMMEDIATE, so a read-then-write transaction takes
the write lock up front and waits for it (``busy timeout``) instead of failing with
"database is locked" when another writer committed in between.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from modelfleet.errors import ConfigError
from modelfleet.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Serialises migrations of gateway replicas that start together on one PostgreSQL.
_MIGRATION_LOCK_ID = 0x6D666C74  # "mflt"
_SQLITE_BUSY_TIMEOUT_S = 30.0
_CONNECT_TIMEOUT_S = 10.0


def database_url(settings: Settings) -> str:
    """The async SQLAlchemy URL ``settings`` asks for (see the module docstring)."""
    raw = settings.database_url
    if not raw:
        return f"sqlite+aiosqlite:///{settings.sqlite_path.resolve()}"
    return normalise_url(raw)


def normalise_url(raw: str) -> str:
    """Rewrite a user-written URL to the async driver this package uses."""
    scheme, sep, rest = raw.partition("://")
    if not sep:
        raise ConfigError(f"database_url {raw!r} is not a URL (expected scheme://...)")
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgres", "postgresql"):
        return "postgresql+asyncpg://" + rest
    if base == "sqlite":
        return "sqlite+aiosqlite://" + rest
    raise ConfigError(f"database_url scheme {scheme!r} is not supported (sqlite or postgresql)")


def redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable url>"


class Database:
    """An AsyncEngine and its session factories. Build with ``open``; ``close`` when done."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT_S}
            _make_sqlite_dir(url)
        else:
            kwargs["pool_pre_ping"] = True
            # asyncpg waits 60 s by default; a wrong host should fail the start sooner.
            kwargs["connect_args"] = {"timeout": _CONNECT_TIMEOUT_S}
        try:
            self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise ConfigError(f"cannot use database {redact(url)}: {exc}") from exc
        self.dialect: str = self.engine.dialect.name
        if self.dialect == "sqlite":
            _install_sqlite_hooks(self.engine)
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        # Same pool; the option tells the SQLite BEGIN hook to take the write lock.
        self._write = async_sessionmaker(
            self.engine.execution_options(modelfleet_write=True), expire_on_commit=False
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for queries; whatever it changed is rolled back when it closes."""
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed if the block ends normally."""
        async with self._write() as session, session.begin():
            yield session

    def insert(self, entity: Any) -> Any:
        """The dialect's INSERT of a table or mapped class; both dialects' have
        ``on_conflict_do_update(index_elements=…, set_=…)`` and ``.excluded``."""
        module = postgresql if self.dialect == "postgresql" else sqlite
        return module.insert(entity)

    async def migrate(self) -> None:
        """Upgrade the schema to the newest revision; a no-op when it is there already."""
        try:
            async with self.engine.execution_options(modelfleet_write=True).begin() as conn:
                if self.dialect == "postgresql":
                    await conn.exec_driver_sql(
                        f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})"
                    )
                await conn.run_sync(_upgrade)
        except (OSError, SQLAlchemyError) as exc:
            raise ConfigError(f"cannot migrate database {redact(self.url)}: {exc}") from exc

    async def table_names(self) -> list[str]:
        """The tables that exist in the database (for checks and tests)."""
        from sqlalchemy import inspect

        async with self.engine.connect() as conn:
            return await conn.run_sync(lambda c: inspect(c).get_table_names())

    async def close(self) -> None:
        await self.engine.dispose()


async def open(settings: Settings, *, url: str | None = None) -> Database:
    """Connect to the database ``settings`` names (or ``url``) and migrate it to head.

    An unreachable or unusable database is a ConfigError naming the (redacted) URL.
    """
    db = Database(normalise_url(url) if url else database_url(settings))
    try:
        await db.migrate()
    except BaseException:
        await db.close()
        raise
    return db


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic Config for the migrations shipped in this package (no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    # configparser interpolation: a '%' in the path must be doubled.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration's revision: each file is named after its revision
    (``0003_alert_rules.py`` is revision ``0003``, a test holds them to it)."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))


def _upgrade(connection: Connection) -> None:
    # A database already at head needs no Alembic: not importing it saves ~10 MB of
    # memory in every gateway that starts on a migrated store.
    try:
        with connection.begin_nested():  # on PostgreSQL a failed query spoils the transaction
            current = connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version").scalar()
    except SQLAlchemyError:
        current = None
    if current == head_revision():
        return
    from alembic import command

    command.upgrade(alembic_config(connection), "head")


def _make_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL, far fewer fsyncs
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("modelfleet_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
