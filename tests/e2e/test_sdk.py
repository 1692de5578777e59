"""The Python SDK (``modelfleet.client``) against a running gateway (simulator engines)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from modelfleet.client import (
    AsyncClient,
    Client,
    ConflictError,
    LogEvent,
    ModelfleetError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from tests.helpers import Gateway, simulator_model, start_gateway, wait_until

# The simulator answers "alpha bravo charlie …", exactly max_tokens words.
WORDS = "alpha bravo charlie"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(tmp_path_factory.mktemp("sdk"), [
        simulator_model("sim-a", aliases=["a"]),
        simulator_model("sim-b"),
    ])
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def fleet(gw: Gateway) -> Iterator[Client]:
    with Client(gw.url, token="unused") as client:
        yield client


def test_sdk_models_crud(fleet: Client) -> None:
    created = fleet.create_model("crud", framework="simulator", aliases=["cr"], priority=5,
                                 tags=["chat", "prod"], config={"model_path": "crud",
                                                                "max_num_seqs": 4})
    assert created.id.startswith("model-") and created.name == "crud"
    assert created.status == "stopped" and created.engine == "simulator"
    assert created.config["max_num_seqs"] == 4 and created.aliases == ["cr"]
    for ident in (created.id, "crud", "cr"):
        assert fleet.get_model(ident).id == created.id

    page = fleet.list_models(page=1, size=2)
    assert page.total == 3 and page.pages == 2 and len(page.items) == 2
    assert [m.name for m in fleet.list_models(tag="chat").items] == ["crud"]
    assert fleet.list_models(framework="vllm").total == 0
    assert {m.name for m in fleet.list_all_models(status="stopped")} >= {"crud", "sim-b"}
    assert len(fleet.list_all_models()) == 3

    updated = fleet.update_model("crud", display_name="Crud", config={"seed": 3})
    assert updated.display_name == "Crud"
    assert updated.config["seed"] == 3 and updated.config["max_num_seqs"] == 4

    with pytest.raises(ConflictError) as conflict:
        fleet.create_model("crud", framework="simulator", model="m")
    assert conflict.value.status == 409 and conflict.value.code == "MODEL_ALREADY_EXISTS"
    with pytest.raises(ValidationError) as invalid:
        fleet.create_model("bad", framework="simulator", model="m", priority="high")
    assert invalid.value.status == 422 and invalid.value.param == "priority"
    with pytest.raises(ValidationError) as invalid:
        fleet.list_models(size=1000)
    assert invalid.value.param == "query.size"

    assert fleet.delete_model(created.id).success
    with pytest.raises(NotFoundError) as missing:
        fleet.get_model("crud")
    err = missing.value
    assert err.status == 404 and err.code == "MODEL_NOT_FOUND" and err.message
    assert str(err).startswith("MODEL_NOT_FOUND: ")
    assert isinstance(err.body, dict) and err.body["success"] is False


def test_sdk_lifecycle_info_and_logs(gw: Gateway, fleet: Client) -> None:
    task = fleet.start_model("a")
    assert task.id.startswith("task-") and task.kind == "start" and task.model == "sim-a"
    task = fleet.wait_task(task.id, timeout=30)
    assert task.succeeded and task.done, task

    info = fleet.model_info("a")
    assert info.model_name == "sim-a" and info.status == "ready" and info.pid
    assert info.aliases == ["a"] and info.last_log
    assert info.config_source  # a field the SDK does not declare reaches the caller
    fleet_info = fleet.all_models_info()
    assert fleet_info.models["sim-a"].status == "ready" and fleet_info.running_models >= 1

    lines = fleet.logs("sim-a", lines=2)
    assert len(lines) == 2 and lines[-1].message == info.last_log and lines[-1].level
    events: list[LogEvent] = []
    for event in fleet.stream_logs("a", lines=2):
        events.append(event)
        if event.type == "historical_complete":
            break
    assert [e.type for e in events] == ["historical", "historical", "historical_complete"]
    assert events[1].log is not None and events[1].log.message == info.last_log
    # leaving the loop closed the stream: the gateway no longer follows for it
    wait_until(lambda: gw.get("/api/logs/stats")["stats"]["active_streams"] == 0, timeout=10)

    assert fleet.restart_model("sim-a", wait=True).succeeded
    assert fleet.model_info("sim-a").start_count == 2
    stopped = fleet.stop_model("sim-a", force=True, wait=True)
    assert stopped.succeeded and stopped.kind == "stop"
    assert fleet.model_info("sim-a").status == "stopped"

    # a start that cannot finish in time: the task fails, and ?wait=true raises why
    failed = fleet.wait_task(fleet.start_model("sim-b", timeout=0.01).id, timeout=30)
    assert failed.state == "failed" and "0.01s" in failed.message
    fleet.stop_model("sim-b", wait=True)
    with pytest.raises(UnavailableError) as unavailable:
        fleet.start_model("sim-b", timeout=0.01, wait=True)
    assert unavailable.value.status == 503 and unavailable.value.code == "TASK_TIMEOUT"
    assert unavailable.value.body["task_id"].startswith("task-")
    fleet.stop_model("sim-b", wait=True)
    with pytest.raises(NotFoundError) as missing:
        fleet.get_task("task-nope")
    assert missing.value.code == "TASK_NOT_FOUND"
    with pytest.raises(NotFoundError):
        fleet.start_model("nope")


def test_sdk_inference(fleet: Client) -> None:
    gen = fleet.generate("sim-a", "Hello, world!", max_tokens=3, top_p=0.9, stop=["\n"])
    assert gen.text == WORDS and gen.model == "sim-a" and gen.usage is not None
    assert gen.usage.completion_tokens == 3 and gen.choices[0].finish_reason == "length"
    chunks = list(fleet.generate_stream("a", "Hello, world!", max_tokens=3))
    assert "".join(c.text for c in chunks).strip() == WORDS

    messages = [{"role": "user", "content": "hi"}]
    chat = fleet.chat("sim-a", messages, max_tokens=3, temperature=0.7)
    assert chat.content == WORDS and chat.choices[0].message.role == "assistant"
    streamed = "".join(c.content for c in fleet.chat_stream("sim-a", messages, max_tokens=3))
    assert streamed.strip() == WORDS

    emb = fleet.embeddings("sim-a", ["Hello world", "How are you?"])
    assert len(emb.vectors) == 2 and len(emb.vectors[0]) == len(emb.vectors[1]) > 1
    assert emb.vectors[0] != emb.vectors[1]

    with pytest.raises(NotFoundError) as missing:
        fleet.generate("nope", "hi")
    assert missing.value.code == "MODEL_NOT_FOUND"
    with pytest.raises(NotFoundError):  # an error before the stream began
        list(fleet.generate_stream("nope", "hi"))
    with pytest.raises(ModelfleetError) as bad:
        fleet.generate("sim-a", "hi", max_tokens=-1)
    assert bad.value.status == 400 and bad.value.param == "max_tokens"
    with pytest.raises(TypeError, match="generate_stream"):
        fleet.generate("sim-a", "hi", stream=True)


def test_sdk_config(fleet: Client) -> None:
    before = fleet.get_config()
    assert before.max_concurrent_models is not None and before.log_level
    assert before.alert_thresholds.gpu_utilization_high is not None
    after = fleet.update_config(max_concurrent_models=15,
                                alert_thresholds={"gpu_utilization_high": 85})
    assert after.max_concurrent_models == 15
    assert after.alert_thresholds.gpu_utilization_high == 85
    # thresholds are merged key by key
    assert after.alert_thresholds.gpu_temperature_high == \
        before.alert_thresholds.gpu_temperature_high
    assert fleet.get_config() == after
    with pytest.raises(ValidationError) as invalid:
        fleet.update_config(max_concurrent_models=0)
    assert invalid.value.param == "max_concurrent_models"
    with pytest.raises(ValidationError) as invalid:
        fleet.update_config(bogus=1)
    assert invalid.value.param == "bogus"
    restored = fleet.update_config(max_concurrent_models=before.max_concurrent_models,
                                   alert_thresholds=before.alert_thresholds.model_dump())
    assert restored == before
    assert fleet.health().status == "ok"


def test_seed_002_python_example(gw: Gateway) -> None:
    # Seed 002's "Python SDK" example, with only the import line changed.
    from modelfleet.client import LLMInferenceClient

    client = LLMInferenceClient(
        base_url=gw.url,
        api_token="YOUR_API_TOKEN"
    )

    # 获取模型列表
    models = client.list_models()

    # 创建模型
    model = client.create_model(
        name="my-model",
        framework="llama.cpp",
        config={"model_path": "/models/model.bin"}
    )

    # 生成文本: /models/model.bin does not exist here, so llama.cpp cannot load it and
    # the SDK raises the gateway's clear error instead of returning a response.
    with pytest.raises(UnavailableError) as failed:
        client.generate(
            model_id=model.id,
            prompt="Hello, world!",
            max_tokens=100
        )

    assert models.total >= 2 and model.engine == "llamacpp"
    assert failed.value.code == "MODEL_START_FAILED"
    assert "/models/model.bin" in str(failed.value.details)
    client.delete_model(model.id)

    # The same three calls on an engine that runs here: the response is seed 002's.
    model = client.create_model(name="my-model", framework="simulator",
                                config={"model_path": "/models/model.bin"})
    response = client.generate(model_id=model.id, prompt="Hello, world!", max_tokens=100)
    assert response.id and response.model == "my-model"
    assert len(response.choices[0].text.split()) == 100
    assert response.usage is not None and response.usage.completion_tokens == 100
    client.delete_model(model.id)
    client.close()


async def test_async_client(gw: Gateway) -> None:
    async with AsyncClient(gw.url) as fleet:
        model = await fleet.create_model("async-sim", framework="simulator", model="m",
                                         tags=["async"])
        assert model.status == "stopped"
        assert [m.name for m in (await fleet.list_models(tag="async")).items] == ["async-sim"]
        task = await fleet.start_model(model.id)
        assert (await fleet.wait_task(task.id, timeout=30)).succeeded
        assert (await fleet.model_info("async-sim")).status == "ready"

        texts = await asyncio.gather(*(fleet.generate("async-sim", f"p{i}", max_tokens=2)
                                       for i in range(4)))
        assert [g.text for g in texts] == ["alpha bravo"] * 4
        chunks = [c.text async for c in fleet.generate_stream("async-sim", "p", max_tokens=3)]
        assert "".join(chunks).strip() == WORDS
        chat = await fleet.chat("async-sim", [{"role": "user", "content": "hi"}], max_tokens=1)
        assert chat.content == "alpha"
        assert len((await fleet.embeddings("async-sim", "x")).vectors) == 1
        assert len(await fleet.logs("async-sim", lines=3)) == 3
        assert (await fleet.get_config()).log_level

        # a stream ends with an ``error`` event when its model is removed
        events: list[LogEvent] = []

        async def read() -> None:
            async with contextlib.aclosing(fleet.stream_logs("async-sim", lines=1)) as stream:
                async for event in stream:
                    events.append(event)

        reader = asyncio.create_task(read())
        while not any(e.type == "historical_complete" for e in events):
            await asyncio.sleep(0.05)
        await fleet.delete_model("async-sim")
        await asyncio.wait_for(reader, 20)
        types = [e.type for e in events]
        assert types[:2] == ["historical", "historical_complete"] and types[-1] == "error"
        assert set(types[2:-1]) <= {"realtime"}  # the engine's last lines as it stops
        assert events[-1].final and "removed" in (events[-1].message or "")

        with pytest.raises(NotFoundError) as missing:
            await fleet.get_model("async-sim")
        assert missing.value.code == "MODEL_NOT_FOUND"
        with pytest.raises(NotFoundError):
            async for _ in fleet.chat_stream("async-sim", [{"role": "user", "content": "x"}]):
                pass
