"""The models the fleet knows: created by the API or synced from the YAML file.

Names are unique among live models (a partial unique index); deleting is soft, so a
deleted model keeps its row and its name is free again. Models whose ``source`` is
"config" belong to the YAML file: ``upsert_from_config`` rewrites them at every start,
so the file stays the truth for them; "api" models are never touched by it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, func, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from modelfleet.errors import ConflictError, InvalidRequestError, ModelNotFoundError
from modelfleet.settings import ModelConfig
from modelfleet.store.convert import (
    columns_of_api,
    columns_of_config,
    model_config_of,
    normalise_engine,
    validate_columns,
)
from modelfleet.store.db import Database
from modelfleet.store.tables import SOURCES, ModelRow, utcnow

MAX_PAGE_SIZE = 100


@dataclass
class SyncResult:
    """What ``upsert_from_config`` did, by model name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # Declared in the file, but an API-made model already has the name; left alone.
    skipped: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)


def _exists_error(name: str) -> ConflictError:
    return ConflictError(
        f"a model named {name!r} already exists",
        code="MODEL_ALREADY_EXISTS",
        param="name",
        details={"name": name},
    )


class ModelsRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, data: Mapping[str, Any], *, source: str = "api") -> ModelRow:
        """Insert a model from an API body (seed 002's fields or ModelConfig's).

        Raises InvalidRequestError when it is not a valid model and ConflictError
        (``MODEL_ALREADY_EXISTS``) when a live model has the name.
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}")
        columns = columns_of_api(data)
        validate_columns(columns)
        row = ModelRow(**columns, source=source)
        try:
            async with self.db.write() as s:
                if await self._live(s, row.name) is not None:
                    raise _exists_error(row.name)
                s.add(row)
        except IntegrityError as exc:  # a concurrent create won the race
            raise _exists_error(row.name) from exc
        return row

    async def get(self, id_or_name: str, *, include_deleted: bool = False) -> ModelRow:
        """The live model with this id (or, failing that, name); ModelNotFoundError if none.

        With ``include_deleted`` an id may also name a deleted model (names may not:
        several deleted rows can share one).
        """
        async with self.db.read() as s:
            return await self._get(s, id_or_name, include_deleted=include_deleted)

    async def list(
        self,
        page: int = 1,
        size: int = 20,
        *,
        framework: str | None = None,
        tag: str | None = None,
        names: Collection[str] | None = None,
    ) -> tuple[Sequence[ModelRow], int]:
        """One page of live models, by name, and how many match in all.

        ``names`` restricts the result to those models: the API filters by live status
        by passing the names the fleet reports in that status (an empty set matches none).
        """
        if page < 1:
            raise InvalidRequestError("page must be 1 or more", param="page")
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidRequestError(f"size must be 1 to {MAX_PAGE_SIZE}", param="size")
        query = select(ModelRow).where(ModelRow.deleted_at.is_(None))
        if framework:
            query = query.where(ModelRow.engine == normalise_engine(framework))
        if tag:
            query = query.where(self._has_tag(tag))
        if names is not None:
            query = query.where(ModelRow.name.in_(list(names)))
        async with self.db.read() as s:
            total = await s.scalar(select(func.count()).select_from(query.subquery()))
            rows = await s.scalars(
                query.order_by(ModelRow.name).offset((page - 1) * size).limit(size)
            )
            return rows.all(), int(total or 0)

    async def all(self) -> Sequence[ModelRow]:
        """Every live model, by name (the registry loads these at start)."""
        async with self.db.read() as s:
            query = select(ModelRow).where(ModelRow.deleted_at.is_(None))
            return (await s.scalars(query.order_by(ModelRow.name))).all()

    async def update(self, id_or_name: str, fields: Mapping[str, Any]) -> ModelRow:
        """Change the given fields; the others stay.

        ``config`` and ``resource_requirements`` are merged key by key (a key set to
        None is removed); ``tags`` is replaced. The result must still be a valid model
        (InvalidRequestError) and a new name must be free (ConflictError).
        """
        changes = columns_of_api(fields, partial=True)
        try:
            async with self.db.write() as s:
                row = await self._get(s, id_or_name)
                for key in ("config", "resource_requirements"):
                    if key in changes:
                        merged = {**(getattr(row, key) or {}), **changes.pop(key)}
                        changes[key] = {k: v for k, v in merged.items() if v is not None}
                new_name = changes.get("name")
                if new_name and new_name != row.name and await self._live(s, new_name):
                    raise _exists_error(new_name)
                current = {k: getattr(row, k) for k in ("name", "engine", "model",
                                                        "auto_start", "resource_requirements",
                                                        "config")}
                validate_columns({**current, **changes})
                for key, value in changes.items():
                    setattr(row, key, value)
                row.updated_at = utcnow()
        except IntegrityError as exc:
            raise _exists_error(str(changes.get("name"))) from exc
        return row

    async def delete(self, id_or_name: str) -> ModelRow:
        """Soft-delete a live model (ModelNotFoundError if there is none)."""
        async with self.db.write() as s:
            row = await self._get(s, id_or_name)
            row.deleted_at = row.updated_at = utcnow()
        return row

    async def upsert_from_config(
        self, configs: Sequence[ModelConfig], *, prune: bool = True
    ) -> SyncResult:
        """Make the store say what the YAML file says, in one transaction.

        New names are inserted (source "config"); config models whose ModelConfig
        differs are rewritten (their display name, description, priority and tags,
        which the file does not hold, are kept); a name held by an API-made model is
        skipped. With ``prune``, config models no longer in the file are soft-deleted.
        """
        result = SyncResult()
        declared = {cfg.name for cfg in configs}
        async with self.db.write() as s:
            query = select(ModelRow).where(
                ModelRow.deleted_at.is_(None),
                or_(ModelRow.source == "config", ModelRow.name.in_(list(declared))),
            )
            live = {row.name: row for row in await s.scalars(query)}
            now = utcnow()
            for cfg in configs:
                row = live.get(cfg.name)
                columns = columns_of_config(cfg)
                if row is None:
                    s.add(ModelRow(**columns, display_name=cfg.name, source="config",
                                   created_at=now, updated_at=now))
                    result.created.append(cfg.name)
                elif row.source != "config":
                    result.skipped.append(cfg.name)
                elif _same(row, cfg):
                    result.unchanged.append(cfg.name)
                else:
                    for key, value in columns.items():
                        setattr(row, key, value)
                    row.updated_at = now
                    result.updated.append(cfg.name)
            if prune:
                for name, row in live.items():
                    if row.source == "config" and name not in declared:
                        row.deleted_at = row.updated_at = now
                        result.removed.append(name)
        return result

    # -- helpers -------------------------------------------------------------------

    def _has_tag(self, tag: str) -> Any:
        if self.db.dialect == "postgresql":
            return type_coerce(ModelRow.tags, JSONB).contains([tag])
        each = func.json_each(ModelRow.tags).table_valued("value")
        return exists(select(1).select_from(each).where(each.c.value == tag))

    async def _live(self, s: AsyncSession, name: str) -> ModelRow | None:
        query = select(ModelRow).where(ModelRow.name == name, ModelRow.deleted_at.is_(None))
        return (await s.scalars(query)).first()

    async def _get(
        self, s: AsyncSession, id_or_name: str, *, include_deleted: bool = False
    ) -> ModelRow:
        by_id = select(ModelRow).where(ModelRow.id == id_or_name)
        if not include_deleted:
            by_id = by_id.where(ModelRow.deleted_at.is_(None))
        row = (await s.scalars(by_id)).first() or await self._live(s, id_or_name)
        if row is None:
            raise ModelNotFoundError(
                f"model {id_or_name!r} does not exist",
                param="model",
                details={"model_id": id_or_name},
            )
        return row


def _same(row: ModelRow, cfg: ModelConfig) -> bool:
    columns = {k: getattr(row, k) for k in ("name", "engine", "model", "auto_start",
                                            "resource_requirements", "config")}
    try:
        return model_config_of(columns) == cfg
    except ValueError:  # pydantic's ValidationError: the stored row is stale, rewrite it
        return False
