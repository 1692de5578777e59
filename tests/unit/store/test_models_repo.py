"""ModelsRepo on both backends: CRUD, pagination and filters, soft delete, config sync."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modelfleet.errors import ConflictError, InvalidRequestError, ModelNotFoundError
from modelfleet.settings import Limits, ModelConfig
from modelfleet.store import Store

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

SEED_002_BODY: dict[str, Any] = {
    "name": "my-model",
    "display_name": "我的模型",
    "description": "模型描述",
    "framework": "llama.cpp",
    "priority": 5,
    "config": {"model_path": "/models/model.bin", "n_ctx": 2048, "n_threads": 4},
    "resource_requirements": {"gpu_count": 1, "gpu_memory": 4096, "cpu_cores": 4},
    "tags": ["production", "chat"],
}


def _body(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "engine": "vllm", "model": f"/models/{name}", **kw}


async def test_create_then_get_by_id_and_name(store: Store) -> None:
    row = await store.models.create(SEED_002_BODY)
    assert row.id.startswith("model-") and row.source == "api"
    assert (await store.models.get(row.id)).name == "my-model"
    assert (await store.models.get("my-model")).id == row.id

    api = (await store.models.get(row.id)).to_api({"status": "running", "health": "healthy"})
    assert {k: api[k] for k in ("name", "display_name", "description", "framework", "priority",
                                "status", "health", "tags")} == {
        "name": "my-model", "display_name": "我的模型", "description": "模型描述",
        "framework": "llamacpp", "priority": 5, "status": "running", "health": "healthy",
        "tags": ["production", "chat"],
    }
    assert api["config"] == SEED_002_BODY["config"]
    # every field, null where unset
    assert api["resource_requirements"] == {**SEED_002_BODY["resource_requirements"],
                                            "memory": None}
    assert ISO_Z.match(api["created_at"]) and ISO_Z.match(api["updated_at"])


async def test_to_model_config_maps_engine_settings_to_args(store: Store) -> None:
    row = await store.models.create(SEED_002_BODY)
    cfg = row.to_model_config()
    assert cfg.engine == "llamacpp" and cfg.model == "/models/model.bin"
    assert cfg.args == {"n_ctx": 2048, "n_threads": 4}
    assert cfg.resource_requirements.gpu_memory == 4096


async def test_create_duplicate_live_name_is_model_already_exists(store: Store) -> None:
    await store.models.create(_body("dup"))
    with pytest.raises(ConflictError) as caught:
        await store.models.create(_body("dup"))
    assert caught.value.code == "MODEL_ALREADY_EXISTS" and caught.value.status == 409


async def test_get_missing_is_model_not_found(store: Store) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        await store.models.get("model-nope")
    assert caught.value.code == "MODEL_NOT_FOUND" and caught.value.status == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "engine": "nonsense", "model": "/w"},
        {"name": "x", "engine": "vllm"},
        {"name": "x", "engine": "vllm", "model": "/w", "colour": "red"},
        {"name": "x", "engine": "vllm", "model": "/w", "priority": "high"},
        {"name": "x", "engine": "vllm", "model": "/w", "config": {"replicas": 0}},
        {"name": "has space", "engine": "vllm", "model": "/w"},
    ],
)
async def test_create_invalid_is_invalid_request(store: Store, body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        await store.models.create(body)
    assert (await store.models.list())[1] == 0


async def test_list_pages_through_every_model_once(store: Store) -> None:
    for i in range(25):
        await store.models.create(_body(f"m{i:02d}"))
    seen: list[str] = []
    for page in (1, 2, 3):
        rows, total = await store.models.list(page=page, size=10)
        assert total == 25
        seen += [r.name for r in rows]
    assert seen == [f"m{i:02d}" for i in range(25)]
    assert (await store.models.list(page=4, size=10))[0] == []
    for bad in ({"size": 101}, {"size": 0}, {"page": 0}):
        with pytest.raises(InvalidRequestError):
            await store.models.list(**bad)


async def test_list_filters_by_framework_tag_and_names(store: Store) -> None:
    await store.models.create(_body("a", engine="llama.cpp", tags=["chat", "prod"]))
    await store.models.create(_body("b", engine="vllm", tags=["chat"]))
    await store.models.create(_body("c", engine="vllm", tags=["embed", "chat-x"]))

    async def names(**kw: Any) -> list[str]:
        rows, total = await store.models.list(**kw)
        assert total == len(rows)
        return [r.name for r in rows]

    assert await names(framework="llama.cpp") == ["a"]
    assert await names(framework="vllm") == ["b", "c"]
    assert await names(tag="chat") == ["a", "b"]  # whole tags, not substrings
    assert await names(tag="prod", framework="vllm") == []
    assert await names(names={"a", "c"}) == ["a", "c"]
    assert await names(names=set()) == []
    assert await names(names={"c"}, tag="embed") == ["c"]


async def test_update_changes_given_fields_and_merges_config(store: Store) -> None:
    row = await store.models.create(SEED_002_BODY)
    updated = await store.models.update(row.id, {
        "display_name": "更新的模型名称",
        "priority": 7,
        "config": {"temperature": 0.8, "n_threads": None},
        "tags": ["production", "chat", "updated"],
    })
    assert updated.updated_at > row.created_at
    again = await store.models.get(row.id)
    assert again.display_name == "更新的模型名称" and again.priority == 7
    assert again.description == "模型描述"
    assert again.config == {"model_path": "/models/model.bin", "n_ctx": 2048, "temperature": 0.8}
    assert again.tags == ["production", "chat", "updated"]


async def test_update_refuses_invalid_and_taken_names(store: Store) -> None:
    row = await store.models.create(_body("one"))
    await store.models.create(_body("two"))
    with pytest.raises(ConflictError) as caught:
        await store.models.update(row.id, {"name": "two"})
    assert caught.value.code == "MODEL_ALREADY_EXISTS"
    with pytest.raises(InvalidRequestError):
        await store.models.update(row.id, {"engine": "nonsense"})
    with pytest.raises(ModelNotFoundError):
        await store.models.update("model-nope", {"priority": 1})
    assert (await store.models.get(row.id)).engine == "vllm"
    assert (await store.models.update(row.id, {"name": "uno"})).name == "uno"


async def test_delete_is_soft_and_frees_the_name(store: Store) -> None:
    row = await store.models.create(_body("gone"))
    await store.models.delete("gone")
    with pytest.raises(ModelNotFoundError):
        await store.models.get(row.id)
    with pytest.raises(ModelNotFoundError):
        await store.models.delete(row.id)
    history = await store.models.get(row.id, include_deleted=True)
    assert history.deleted_at is not None and history.name == "gone"
    assert (await store.models.list())[1] == 0
    again = await store.models.create(_body("gone"))
    assert again.id != row.id and (await store.models.get("gone")).id == again.id


async def test_upsert_from_config_keeps_api_models_and_updates_config_ones(store: Store) -> None:
    api_made = await store.models.create(_body("shared", engine="llamacpp", tags=["mine"]))
    configs = [
        ModelConfig(name="a", engine="vllm", model="/a", aliases=["alpha"]),
        ModelConfig(name="b", engine="builtin", model="/b", limits=Limits(max_concurrent=2)),
        ModelConfig(name="shared", engine="vllm", model="/file/shared"),
    ]
    first = await store.models.upsert_from_config(configs)
    assert (first.created, first.skipped, first.updated) == (["a", "b"], ["shared"], [])
    a = await store.models.get("a")
    assert a.source == "config" and a.to_model_config() == configs[0]

    # A user edits the metadata the file does not hold; the file changes "a" and drops "b".
    await store.models.update("a", {"description": "kept", "tags": ["t"]})
    changed = [configs[0].model_copy(update={"model": "/a2", "replicas": 2}), configs[2]]
    second = await store.models.upsert_from_config(changed)
    assert (second.updated, second.removed, second.skipped) == (["a"], ["b"], ["shared"])
    a = await store.models.get("a")
    assert a.model == "/a2" and a.to_model_config().replicas == 2
    assert a.description == "kept" and a.tags == ["t"]
    with pytest.raises(ModelNotFoundError):
        await store.models.get("b")

    shared = await store.models.get("shared")
    assert shared.id == api_made.id and shared.engine == "llamacpp" and shared.source == "api"

    third = await store.models.upsert_from_config(changed)
    assert not third.changed and third.unchanged == ["a"]
    kept = await store.models.upsert_from_config([], prune=False)
    assert not kept.changed and (await store.models.get("a")).deleted_at is None


async def test_to_api_hides_the_upstream_api_key_and_keeps_live_fields(store: Store) -> None:
    await store.models.upsert_from_config(
        [ModelConfig(name="ext", engine="external", model="http://x/v1", api_key="sk-secret")]
    )
    row = await store.models.get("ext")
    assert row.to_model_config().api_key == "sk-secret"
    api = row.to_api({"resource_usage": {"gpu_memory": 1}, "name": "spoofed"})
    assert "sk-secret" not in repr(api)
    assert api["resource_usage"] == {"gpu_memory": 1} and api["name"] == "ext"
    assert api["status"] == "stopped"
