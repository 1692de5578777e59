"""Seed 002's model-management API against a running gateway (simulator engines)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway, simulator_model, start_gateway, wait_until
from tests.pg import pg_database_url

# Seed 002's create example, with an engine that can run here.
CREATE_BODY: dict[str, Any] = {
    "name": "my-model",
    "display_name": "我的模型",
    "description": "模型描述",
    "framework": "simulator",
    "priority": 5,
    "config": {"model_path": "/models/model.bin", "max_num_seqs": 4, "block_size": 16},
    "tags": ["production", "chat"],
}


def _api(gw: Gateway, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, gw.url + path, timeout=60, **kw)


def _task_done(gw: Gateway, task_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        task = _api(gw, "GET", f"/api/tasks/{task_id}").json()
        return task if task["state"] in ("succeeded", "failed") else None

    result: dict[str, Any] = wait_until(done, timeout=60)
    return result


def _lifecycle(gw: Gateway, model: str, action: str, **body: Any) -> dict[str, Any]:
    r = _api(gw, "POST", f"/api/models/{model}/{action}", json=body or None)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["success"] is True and out["task_id"].startswith("task") and out["message"]
    return _task_done(gw, out["task_id"])


def test_crud_and_lifecycle(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("sim-a", aliases=["a"]),
                                  simulator_model("sim-b", auto_start=True)])
    try:
        # create (seed 002's body)
        r = _api(gw, "POST", "/api/models", json=CREATE_BODY)
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["name"] == "my-model" and created["status"] == "created"
        assert created["id"] and created["message"]
        model_id = created["id"]

        # duplicate → 409; validation → 422 naming the field
        r = _api(gw, "POST", "/api/models", json=CREATE_BODY)
        assert r.status_code == 409 and r.json()["error"]["code"] == "MODEL_ALREADY_EXISTS"
        assert r.json()["success"] is False
        r = _api(gw, "POST", "/api/models", json={"name": "x", "framework": "simulator",
                                                  "model": "m", "priority": "high"})
        assert r.status_code == 422 and r.json()["error"]["param"] == "priority"
        r = _api(gw, "POST", "/api/models", json={"name": "x", "framework": "simulator",
                                                  "model": "m", "bogus": 1})
        assert r.status_code == 422 and r.json()["error"]["param"] == "bogus"

        # get by id and by name (002's detail); the 003 info route still works
        for ident in (model_id, "my-model"):
            r = _api(gw, "GET", f"/api/models/{ident}")
            assert r.status_code == 200, r.text
            d = r.json()
            assert d["id"] == model_id and d["display_name"] == "我的模型"
            assert d["framework"] == "simulator" and d["priority"] == 5
            assert d["status"] == "stopped" and d["tags"] == ["production", "chat"]
            assert d["config"]["max_num_seqs"] == 4
            assert d["performance_stats"]["requests"] == 0
        assert _api(gw, "GET", "/api/models/a").json()["name"] == "sim-a"  # alias
        assert gw.info("my-model")["status"] == "stopped"
        r = _api(gw, "GET", "/api/models/nope")
        assert r.status_code == 404 and r.json()["success"] is False
        assert _api(gw, "GET", "/api/v1/models/my-model").json()["id"] == model_id

        # list: pagination and filters
        page = _api(gw, "GET", "/api/models", params={"page": 1, "size": 2}).json()
        assert page["total"] == 3 and page["pages"] == 2 and page["size"] == 2
        assert [m["name"] for m in page["items"]] == ["my-model", "sim-a"]
        page2 = _api(gw, "GET", "/api/models?page=2&size=2").json()
        assert [m["name"] for m in page2["items"]] == ["sim-b"]
        tagged = _api(gw, "GET", "/api/models?tag=chat").json()
        assert [m["name"] for m in tagged["items"]] == ["my-model"]
        assert _api(gw, "GET", "/api/models?framework=vllm").json()["total"] == 0
        assert _api(gw, "GET", "/api/v1/models?framework=simulator").json()["total"] == 3
        r = _api(gw, "GET", "/api/models?size=101")
        assert r.status_code == 422 and r.json()["error"]["param"] == "query.size"
        assert _api(gw, "GET", "/api/models?status=bogus").status_code == 422

        # update (002's PUT body)
        r = _api(gw, "PUT", f"/api/models/{model_id}", json={
            "display_name": "更新的模型名称", "priority": 7,
            "config": {"seed": 3}, "tags": ["production", "chat", "updated"]})
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["display_name"] == "更新的模型名称" and d["priority"] == 7
        assert d["config"]["seed"] == 3 and d["config"]["max_num_seqs"] == 4
        assert "updated" in d["tags"]
        r = _api(gw, "PUT", "/api/models/my-model", json={"name": "other"})
        assert r.status_code == 422 and r.json()["error"]["param"] == "name"
        # an alias that clashes is refused and the row is left as it was
        r = _api(gw, "PUT", "/api/models/my-model", json={"aliases": ["a"]})
        assert r.status_code == 409, r.text
        assert _api(gw, "GET", "/api/models/my-model").json()["aliases"] == []

        # start through the task API, then the model serves
        task = _lifecycle(gw, "my-model", "start", force=False, timeout=60)
        assert task["state"] == "succeeded", task
        assert task["kind"] == "start" and task["model"] == "my-model"
        d = _api(gw, "GET", "/api/models/my-model").json()
        assert d["status"] == "ready" and d["health"] == "healthy"
        assert d["resource_usage"]["instances"] >= 1
        reply = gw.client().chat.completions.create(
            model="my-model", messages=[{"role": "user", "content": "hi"}], max_tokens=8)
        assert reply.choices[0].message.content
        running = _api(gw, "GET", "/api/models?status=running").json()
        assert "my-model" in [m["name"] for m in running["items"]]
        stopped = _api(gw, "GET", "/api/models?status=stopped").json()
        assert "my-model" not in [m["name"] for m in stopped["items"]]
        stats = _api(gw, "GET", "/api/models/my-model").json()["performance_stats"]
        assert stats["requests"] == 1 and stats["completion_tokens"] > 0

        # restart, stop (forced)
        assert _lifecycle(gw, "my-model", "restart")["state"] == "succeeded"
        assert gw.info("my-model")["status"] == "ready"
        assert _lifecycle(gw, model_id, "stop", force=True)["state"] == "succeeded"
        assert gw.info("my-model")["status"] == "stopped"
        r = _api(gw, "POST", "/api/models/nope/start")
        assert r.status_code == 404 and r.json()["success"] is False
        r = _api(gw, "POST", "/api/models/my-model/start", json={"timeout": -1})
        assert r.status_code == 422
        assert _api(gw, "GET", "/api/tasks/task-nope").status_code == 404

        # restart-autostart: only sim-b is auto_start
        r = _api(gw, "POST", "/api/models/restart-autostart")
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["success"] is True and out["started_models"] == ["sim-b"]
        assert _task_done(gw, out["task_ids"]["sim-b"])["state"] == "succeeded"
        assert gw.info("sim-b")["status"] == "ready"
        assert gw.info("my-model")["status"] == "stopped"

        # stop-all
        _lifecycle(gw, "a", "start")
        r = _api(gw, "POST", "/api/models/stop-all")
        assert r.status_code == 200 and r.json()["success"] is True
        assert {m["status"] for m in _api(gw, "GET", "/api/models").json()["items"]} \
            == {"stopped"}

        # delete
        r = _api(gw, "POST", "/api/models", json={**CREATE_BODY, "name": "gone"})
        assert r.status_code == 201
        assert _lifecycle(gw, "gone", "start")["state"] == "succeeded"
        r = _api(gw, "DELETE", "/api/models/gone")
        assert r.status_code == 200 and r.json()["success"] is True
        assert _api(gw, "GET", "/api/models/gone").status_code == 404
        assert _api(gw, "DELETE", "/api/models/gone").status_code == 404
        assert "gone" not in gw.get("/api/models/all-models/info")["models"]
    finally:
        gw.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Config for the store: the SQLite file under data_dir, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield {}
        return
    with pg_database_url() as url:
        yield {"database_url": url}


def test_api_model_survives_restart(tmp_path: Path, database: dict[str, Any]) -> None:
    models = [simulator_model("sim-a"), simulator_model("sim-b")]
    gw = start_gateway(tmp_path, models, **database)
    try:
        r = _api(gw, "POST", "/api/models", json={**CREATE_BODY, "auto_start": True})
        assert r.status_code == 201, r.text
        model_id = r.json()["id"]
        # an API-made auto_start model starts at once, as the file's do at boot
        wait_until(lambda: gw.info("my-model")["status"] == "ready", timeout=30)
        r = _api(gw, "PUT", "/api/models/sim-b", json={"description": "edited", "tags": ["x"]})
        assert r.status_code == 200, r.text
        gw.client().chat.completions.create(
            model="sim-a", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        r = _api(gw, "POST", "/api/models/sim-a/stop?wait=true")
        assert r.status_code == 200, r.text
        history = _api(gw, "GET", "/api/models/sim-a/logs?lines=200").json()["logs"]
        assert any("stopped" in line["message"] for line in history)
    finally:
        gw.stop()
    gw = start_gateway(tmp_path, models, **database)  # same data_dir and database
    try:
        d = _api(gw, "GET", "/api/models/my-model").json()
        assert d["id"] == model_id and d["source"] == "api" and d["priority"] == 5
        assert d["auto_start"] is True
        wait_until(lambda: gw.info("my-model")["status"] == "ready", timeout=30)
        b = _api(gw, "GET", "/api/models/sim-b").json()
        assert b["description"] == "edited" and b["tags"] == ["x"]
        reply = gw.client().chat.completions.create(
            model="my-model", messages=[{"role": "user", "content": "hi"}], max_tokens=8)
        assert reply.choices[0].message.content
        # the history of before the restart is still there
        lines = _api(gw, "GET", "/api/models/sim-a/logs?lines=500").json()["logs"]
        assert any("sim-a stopped" in line["message"] for line in lines)
    finally:
        gw.stop()


def test_start_timeout_marks_task_failed(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("slow")])
    try:
        r = _api(gw, "POST", "/api/models/slow/start", json={"timeout": 0.01})
        assert r.status_code == 200, r.text
        task = _task_done(gw, r.json()["task_id"])
        assert task["state"] == "failed" and "0.01s" in task["message"]
        # ?wait=true answers when the task is over; a failed task is its error
        r = _api(gw, "POST", "/api/models/slow/stop?wait=true")
        assert r.status_code == 200 and r.json()["status"] == "stopped", r.text
        r = _api(gw, "POST", "/api/models/slow/start?wait=true", json={"timeout": 0.01})
        assert r.status_code == 503 and r.json()["error"]["code"] == "TASK_TIMEOUT", r.text
        assert r.json()["success"] is False and r.json()["task_id"].startswith("task")
        r = _api(gw, "POST", "/api/models/slow/start?wait=true")
        assert r.status_code == 200 and r.json()["status"] == "ready", r.text
        assert gw.info("slow")["status"] == "ready"
    finally:
        gw.stop()


def test_config_sampling_keys_are_request_defaults(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("sim-a")])
    try:
        r = _api(gw, "POST", "/api/models", json={
            "name": "tuned", "framework": "simulator",
            "config": {"model_path": "tuned", "n_ctx": 512, "max_tokens": 3}})
        assert r.status_code == 201, r.text
        chat = gw.client().chat.completions.create
        hi = [{"role": "user", "content": "hi"}]
        assert chat(model="tuned", messages=hi).usage.completion_tokens == 3
        assert chat(model="tuned", messages=hi, max_tokens=5).usage.completion_tokens == 5
        # seed 002's update puts sampling parameters in config: they apply at once
        r = _api(gw, "PUT", "/api/models/tuned", json={"config": {"max_tokens": 2}})
        assert r.status_code == 200 and r.json()["config"]["max_tokens"] == 2, r.text
        assert chat(model="tuned", messages=hi).usage.completion_tokens == 2
        r = _api(gw, "PUT", "/api/models/tuned", json={"config": {"top_p": 3}})
        assert r.status_code == 422 and "top_p" in r.json()["error"]["message"], r.text
        # a wrong context length is the engine's 400, not a crash
        r = gw.post("/v1/chat/completions", json={"model": "tuned", "messages": hi,
                                                  "max_tokens": 600})
        assert r.status_code == 400 and "maximum context length" in r.text, r.text
    finally:
        gw.stop()
