"""Alembic's environment for the store's migrations.

The gateway runs migrations itself (``modelfleet.store.db.Database.migrate``): it opens
an async connection and hands its sync facade over in
``config.attributes["connection"]``, inside a transaction it commits. For writing a new
revision by hand, build ``alembic_config()`` with ``sqlalchemy.url`` set and call
``alembic.command.revision(cfg, message, autogenerate=True)``; the URL is then opened here.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from modelfleet.store.tables import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_configure)
    finally:
        await engine.dispose()


def _run() -> None:
    connection = config.attributes.get("connection")
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    elif connection is not None:
        _configure(connection)
    elif url:
        asyncio.run(_run_with_url(url))
    else:
        raise RuntimeError("no connection and no sqlalchemy.url: use modelfleet.store.db")


_run()
