"""Background operations (start, stop, restart) that an API call hands back a ``task_id`` for.

The fleet updates a task as the operation runs; the API reads it back by id.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from modelfleet.errors import InvalidRequestError, NotFoundError
from modelfleet.store.db import Database
from modelfleet.store.tables import TASK_STATES, TaskRow, utcnow


def _not_found(task_id: str) -> NotFoundError:
    return NotFoundError(f"task {task_id!r} does not exist", code="TASK_NOT_FOUND",
                         details={"task_id": task_id})


class TasksRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, kind: str, model: str | None = None, message: str = "") -> TaskRow:
        """A new task in state "pending"."""
        row = TaskRow(kind=kind, model=model, message=message, state="pending")
        async with self.db.write() as s:
            s.add(row)
        return row

    async def update(
        self, task_id: str, *, state: str | None = None, message: str | None = None
    ) -> TaskRow:
        """Set the state and/or message; NotFoundError for an unknown id."""
        if state is not None and state not in TASK_STATES:
            raise InvalidRequestError(f"state must be one of {', '.join(TASK_STATES)}",
                                      param="state")
        async with self.db.write() as s:
            row = await s.get(TaskRow, task_id)
            if row is None:
                raise _not_found(task_id)
            if state is not None:
                row.state = state
            if message is not None:
                row.message = message
            row.updated_at = utcnow()
        return row

    async def get(self, task_id: str) -> TaskRow:
        async with self.db.read() as s:
            row = await s.get(TaskRow, task_id)
        if row is None:
            raise _not_found(task_id)
        return row

    async def list(self, model: str | None = None, *, limit: int = 50) -> Sequence[TaskRow]:
        """Tasks newest first, of one model or all."""
        query = select(TaskRow).order_by(TaskRow.created_at.desc(), TaskRow.id)
        if model is not None:
            query = query.where(TaskRow.model == model)
        async with self.db.read() as s:
            return (await s.scalars(query.limit(limit))).all()
