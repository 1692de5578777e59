"""TasksRepo on both backends."""

from __future__ import annotations

import pytest

from modelfleet.errors import InvalidRequestError, NotFoundError
from modelfleet.store import Store


async def test_task_lifecycle(store: Store) -> None:
    task = await store.tasks.create("start", model="m", message="模型启动中")
    assert task.id.startswith("task-") and task.state == "pending"

    running = await store.tasks.update(task.id, state="running")
    assert running.message == "模型启动中" and running.updated_at >= task.created_at
    await store.tasks.update(task.id, state="succeeded", message="ready")
    done = await store.tasks.get(task.id)
    assert (done.state, done.message, done.model) == ("succeeded", "ready", "m")
    assert done.to_api()["task_id"] == task.id


async def test_tasks_refuse_unknown_ids_and_states(store: Store) -> None:
    task = await store.tasks.create("stop")
    with pytest.raises(InvalidRequestError):
        await store.tasks.update(task.id, state="exploded")
    with pytest.raises(NotFoundError) as caught:
        await store.tasks.get("task-nope")
    assert caught.value.code == "TASK_NOT_FOUND"
    with pytest.raises(NotFoundError):
        await store.tasks.update("task-nope", state="failed")


async def test_tasks_list_newest_first_by_model(store: Store) -> None:
    first = await store.tasks.create("start", model="a")
    second = await store.tasks.create("restart", model="a")
    await store.tasks.create("start", model="b")
    assert [t.id for t in await store.tasks.list("a")] == [second.id, first.id]
    assert len(await store.tasks.list()) == 3 and len(await store.tasks.list(limit=1)) == 1
