"""The store: SQLAlchemy 2 (async) tables, repositories and Alembic migrations.

SQLite (``data_dir/modelfleet.db``) by default, PostgreSQL when ``database_url`` says
so. ``Store.open(settings)`` connects, applies migrations and hands back one repository
per area (models, users, keys, alerts, settings, requests, rollups, tasks).
"""

from modelfleet.store.db import Database, database_url, open
from modelfleet.store.models_repo import SyncResult
from modelfleet.store.repos import Store

__all__ = ["Database", "Store", "SyncResult", "database_url", "open"]
