"""``Store``: the database and one repository per area, built together.

    store = await Store.open(settings)      # connects and migrates
    row = await store.models.create({"name": "m", "framework": "vllm", "model": "/w"})
    await store.close()

Every repository method opens its own short session: callers never hold one, and a
method's transaction is its unit of atomicity.
"""

from __future__ import annotations

from modelfleet.settings import Settings
from modelfleet.store import db as _db
from modelfleet.store.config_repo import AlertsRepo, SettingsRepo
from modelfleet.store.db import Database
from modelfleet.store.keys_repo import KeysRepo, UsersRepo
from modelfleet.store.metrics_repo import RequestLogRepo, RollupsRepo
from modelfleet.store.models_repo import ModelsRepo
from modelfleet.store.tasks_repo import TasksRepo


class Store:
    """All repositories over one Database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.models = ModelsRepo(db)
        self.users = UsersRepo(db)
        self.keys = KeysRepo(db)
        self.alerts = AlertsRepo(db)
        self.settings = SettingsRepo(db)
        self.requests = RequestLogRepo(db)
        self.rollups = RollupsRepo(db)
        self.tasks = TasksRepo(db)

    @classmethod
    async def open(cls, settings: Settings, *, url: str | None = None) -> Store:
        """Open (and migrate) the database ``settings`` names; see ``db.open``."""
        return cls(await _db.open(settings, url=url))

    async def close(self) -> None:
        await self.db.close()
