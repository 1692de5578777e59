"""The gateway's relay against real simulator engine processes."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import Gateway, free_port, http_ok, simulator_model, start_gateway, wait_until


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("relay")
    gateway = start_gateway(tmp, [
        simulator_model("sim", aliases=["sim-alias"], args={"decode_ms_per_token": 2}),
        simulator_model("slow", args={"prefill_ms_per_token": 3000}),
    ], timeouts={"first_byte": 0.5, "first_byte_per_token": 0.0, "idle": 5})
    yield gateway
    gateway.stop()


def test_relay_chat_by_alias_with_usage(gw: Gateway) -> None:
    resp = gw.client().chat.completions.create(
        model="sim-alias", messages=[{"role": "user", "content": "one two three"}], max_tokens=4)
    assert resp.choices[0].message.content == "alpha bravo charlie delta"
    assert resp.usage is not None and resp.usage.prompt_tokens == 3
    assert resp.usage.completion_tokens == 4


def test_relay_streams_every_chunk(gw: Gateway) -> None:
    stream = gw.client().completions.create(model="sim", prompt="x", max_tokens=6, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "alpha bravo charlie delta echo foxtrot "
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_relay_sse_bytes_arrive_as_sent(gw: Gateway) -> None:
    with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=30, json={
        "model": "sim", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3,
        "stream": True,
    }) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = b"".join(resp.iter_bytes())
    events = [e for e in body.split(b"\n\n") if e]
    # the role chunk, three tokens, the finish chunk, [DONE]
    assert len(events) == 6 and events[-1] == b"data: [DONE]"


def test_relay_unknown_model_is_not_found(gw: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        gw.client().chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}])
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "MODEL_NOT_FOUND"


def test_relay_bad_parameters_are_bad_request(gw: Gateway) -> None:
    client = gw.client()
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": "x"}], temperature=7)
    resp = httpx.post(gw.url + "/v1/chat/completions", content=b"{not json", timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "INVALID_JSON"
    resp = httpx.post(gw.url + "/v1/completions", json={"prompt": "x"}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"


def test_relay_body_size_is_bounded(gw: Gateway) -> None:
    resp = httpx.post(gw.url + "/v1/completions", content=b"x" * (17 * 1024 * 1024),
                      timeout=30)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_relay_first_byte_timeout_is_504(gw: Gateway) -> None:
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        gw.client().completions.create(model="slow", prompt="x", max_tokens=2)
    assert info.value.status_code == 504
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "INFERENCE_TIMEOUT"
    # The model was started first (its own start time does not count), then timed out fast.
    assert time.monotonic() - started < 20


def test_relay_forwards_other_routes_to_the_engine(gw: Gateway) -> None:
    resp = gw.post("/tokenize", json={"model": "sim", "prompt": "a bb ccc"})
    assert resp.status_code == 200 and resp.json()["tokens"] == [1, 2, 3]
    # A route the engine lacks: its own 404, in our envelope.
    resp = gw.post("/v1/responses", json={"model": "sim", "input": "x"})
    assert resp.status_code == 404 and resp.json()["path"] == "/v1/responses"
    resp = gw.post("/v1/responses", json={"model": "missing"})
    assert resp.json()["error"]["code"] == "MODEL_NOT_FOUND"
    resp = httpx.get(gw.url + "/not-an-api", timeout=10)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "ROUTE_NOT_FOUND"


def test_relay_models_list_union(gw: Gateway) -> None:
    data = gw.client().models.list()
    ids = [m.id for m in data.data]
    assert ids == ["sim", "slow"]
    raw = gw.get("/v1/models")
    assert raw["data"][0]["aliases"] == ["sim-alias"]
    assert {m["id"] for m in raw["models"]} == {"sim", "slow"}
    assert "chat" in raw["models"][0]["supports"]


def test_relay_openapi_documents_inference_routes(gw: Gateway) -> None:
    schema = gw.get("/openapi.json")
    op = schema["paths"]["/v1/chat/completions"]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[1]
    assert "messages" in schema["components"]["schemas"][name]["properties"]
    assert "/v1/embeddings" in schema["paths"] and "/health" in schema["paths"]
    assert httpx.get(gw.url + "/docs", timeout=10).status_code == 200


def test_relay_health_routes(gw: Gateway) -> None:
    assert gw.get("/check_health") == {"status": "ok"}
    health = gw.get("/health")
    assert health["status"] == "ok" and health["models_count"] == 2
    full = gw.get("/health/full")
    assert full["total"] == 2 and set(full["details"]) == {"sim", "slow"}
    assert gw.get("/")["models_url"] == "/v1/models"


def test_relay_client_disconnect_aborts_upstream(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, [simulator_model("sim", args={"decode_ms_per_token": 50})])
    try:
        with httpx.stream("POST", gateway.url + "/v1/completions", timeout=30, json={
            "model": "sim", "prompt": "x", "max_tokens": 400, "stream": True,
        }) as resp:
            lines = resp.iter_lines()
            assert next(lines).startswith("data: ")
        engine = gateway.info("sim")["endpoint"]
        stats = wait_until(lambda: (s := httpx.get(engine + "/stats").json())["aborted"] == 1
                           and s, timeout=5)
        assert stats["running"] == 0
        assert stats["generation_tokens_total"] < 100
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("faults")
    gateway = start_gateway(tmp, [
        simulator_model("limited", args={"error_rate": 1.0, "error_status": 429}),
        simulator_model("broken", args={"error_rate": 1.0, "error_status": 500}),
        simulator_model("stalls", args={"stall_mid_stream_s": 30}),
        simulator_model("crashes", args={"crash_after": 1}),
    ], timeouts={"idle": 1.0})
    yield gateway
    gateway.stop()


def test_relay_engine_status_maps_to_openai_exceptions(faulty: Gateway) -> None:
    client = faulty.client()
    with pytest.raises(openai.RateLimitError) as info:
        client.completions.create(model="limited", prompt="x")
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "INJECTED_FAULT"
    assert info.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.InternalServerError) as err:
        client.completions.create(model="broken", prompt="x")
    assert err.value.status_code == 500


def test_relay_stall_mid_stream_ends_with_an_error_event(faulty: Gateway) -> None:
    with httpx.stream("POST", faulty.url + "/v1/completions", timeout=30, json={
        "model": "stalls", "prompt": "x", "max_tokens": 6, "stream": True,
    }) as resp:
        assert resp.status_code == 200
        events = [e for e in b"".join(resp.iter_bytes()).split(b"\n\n") if e]
    assert len(events) == 5  # three chunks, the error, [DONE]
    error = events[-2].removeprefix(b"data: ")
    assert b'"INFERENCE_TIMEOUT"' in error
    assert events[-1] == b"data: [DONE]"


def test_relay_engine_crash_is_a_json_error_then_restart(faulty: Gateway) -> None:
    client = faulty.client()
    client.completions.create(model="crashes", prompt="x", max_tokens=1)  # request 1 is served
    with pytest.raises(openai.APIStatusError) as info:
        client.completions.create(model="crashes", prompt="x", max_tokens=1)
    assert info.value.status_code == 502
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "UPSTREAM_ERROR"
    wait_until(lambda: faulty.info("crashes")["status"] == "failed", timeout=5)
    resp = client.completions.create(model="crashes", prompt="x", max_tokens=1)
    assert resp.choices[0].text
    assert faulty.info("crashes")["start_count"] == 2


def test_relay_external_server_with_its_own_model_name(tmp_path: Path) -> None:
    """An external OpenAI server: not launched, probed on /v1/models, names rewritten."""
    port = free_port()
    upstream = subprocess.Popen([sys.executable, "-m", "modelfleet.engines.simulator",
                                 "--port", str(port), "--served-model-name", "their-name"])
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), timeout=20)
    gateway = start_gateway(tmp_path, [{
        "name": "remote", "engine": "external", "model": f"http://127.0.0.1:{port}/v1",
        "upstream_model": "their-name", "aliases": ["r"], "api_key": "sk-upstream"}])
    try:
        resp = gateway.client().chat.completions.create(
            model="r", messages=[{"role": "user", "content": "x"}], max_tokens=2)
        assert resp.model == "their-name" and resp.choices[0].message.content
        info = gateway.info("remote")
        assert info["status"] == "ready" and info["pid"] is None
        assert gateway.engine_pids() == []  # nothing launched
    finally:
        gateway.stop()
        upstream.terminate()
        upstream.wait(10)


def test_relay_missing_engine_is_a_clear_503(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, [{"name": "big", "engine": "vllm", "model": "/m/qwen"}])
    try:
        with pytest.raises(openai.APIStatusError) as info:
            gateway.client().chat.completions.create(
                model="big", messages=[{"role": "user", "content": "x"}])
        assert info.value.status_code == 503
        assert isinstance(info.value.body, dict)
        assert info.value.body["code"] == "ENGINE_NOT_INSTALLED"
        assert gateway.info("big")["status"] == "failed"
    finally:
        gateway.stop()


def test_relay_retries_on_the_healthy_instances(tmp_path: Path) -> None:
    """Three instances of one model on three GPUs; the one on cuda:0 always fails."""
    gpus = [{"id": f"cuda:{i}", "memory_mb": 1000} for i in range(3)]
    profiles = [
        {"name": "bad", "devices": ["cuda:0"], "args": {"error_rate": 1.0, "error_status": 500}},
        {"name": "g1", "devices": ["cuda:1"]},
        {"name": "g2", "devices": ["cuda:2"]},
    ]
    gateway = start_gateway(tmp_path, [simulator_model(
        "trio", replicas=3, profiles=profiles, resource_requirements={"gpu_memory": 800})],
        devices=gpus)
    try:
        client = gateway.client()
        for _ in range(12):
            resp = client.completions.create(model="trio", prompt="x", max_tokens=2)
            assert resp.choices[0].text == "alpha bravo"
        instances = gateway.info("trio")["instances"]
        assert len(instances) == 3
        assert sum(i["served"] for i in instances) >= 12
        assert "retrying" in gateway.log()
        # One instance crashing leaves the model serving on the others.
        os.kill(instances[1]["pid"], signal.SIGKILL)
        for _ in range(6):
            client.completions.create(model="trio", prompt="x", max_tokens=2)
        info = gateway.info("trio")
        assert info["status"] == "ready" and info["start_count"] == 1
        wait_until(lambda: len(gateway.info("trio")["instances"]) == 3, timeout=20)
    finally:
        gateway.stop()


def test_relay_falls_back_to_another_model(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, [
        simulator_model("flaky", args={"error_rate": 1.0, "error_status": 503},
                        fallbacks=["steady"]),
        simulator_model("steady"),
    ])
    try:
        resp = gateway.client().completions.create(model="flaky", prompt="x", max_tokens=1)
        assert resp.model == "steady"
    finally:
        gateway.stop()
