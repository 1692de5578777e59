"""The management API's wire models."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelfleet.protocol.admin import (
    LifecycleRequest,
    ModelCreate,
    ModelUpdate,
    fleet_states,
)

SEED_002_CREATE = {
    "name": "my-model",
    "display_name": "我的模型",
    "description": "模型描述",
    "framework": "llama.cpp",
    "priority": 5,
    "config": {"model_path": "/models/model.bin", "n_ctx": 2048, "n_threads": 4,
               "n_gpu_layers": 32},
    "resource_requirements": {"gpu_count": 1, "gpu_memory": 4096, "cpu_cores": 4},
    "tags": ["production", "chat"],
}


def test_create_takes_seed_002_body() -> None:
    body = ModelCreate.model_validate(SEED_002_CREATE)
    assert body.store_fields() == SEED_002_CREATE


def test_create_sends_only_what_was_given() -> None:
    body = ModelCreate.model_validate({"name": "m", "engine": "simulator", "model": "m",
                                       "aliases": ["x"]})
    assert body.store_fields() == {"name": "m", "engine": "simulator", "model": "m",
                                   "aliases": ["x"]}


@pytest.mark.parametrize("bad, field", [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "a/b"}, "name"),
    ({"name": "m", "priority": "high"}, "priority"),
    ({"name": "m", "tags": "chat"}, "tags"),
    ({"name": "m", "tags": [1]}, "tags"),
    ({"name": "m", "config": []}, "config"),
])
def test_create_rejects_with_the_field_named(bad: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ModelCreate.model_validate(bad)
    assert info.value.errors()[0]["loc"][0] == field


def test_update_is_partial() -> None:
    body = ModelUpdate.model_validate({"display_name": "x", "priority": 7,
                                       "config": {"temperature": 0.8}})
    assert body.store_fields() == {"display_name": "x", "priority": 7,
                                   "config": {"temperature": 0.8}}
    assert ModelUpdate().store_fields() == {}


def test_lifecycle_request() -> None:
    assert LifecycleRequest() == LifecycleRequest(force=False, timeout=None)
    assert LifecycleRequest.model_validate({"force": True, "timeout": 300}).timeout == 300
    for bad in ({"timeout": 0}, {"timeout": -1}, {"force": "maybe"}, {"other": 1}):
        with pytest.raises(ValidationError):
            LifecycleRequest.model_validate(bad)


def test_status_words() -> None:
    assert fleet_states("running") == ("ready",)
    assert fleet_states("error") == ("failed",)
    assert fleet_states("Stopped") == ("stopped",)
    assert fleet_states("starting") == ("starting",)
    assert fleet_states("bogus") is None
