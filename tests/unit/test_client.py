"""The SDK's parsing and error mapping, for faults a healthy gateway does not produce.

What the gateway really answers is covered by tests/e2e/test_sdk.py; here httpx's
MockTransport stands in only for broken answers, and a closed port for no answer.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from modelfleet.client import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    GatewayTimeout,
    GatewayUnreachable,
    MalformedResponseError,
    Model,
    ModelfleetError,
    NotFoundError,
    OperationTimeout,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnavailableError,
    ValidationError,
)
from modelfleet.client.errors import error_from
from modelfleet.client.sse import SSEReader, completion_decoder, log_event
from modelfleet.client.types import GenerationChunk
from tests.helpers import free_port

TASK = {"id": "task-1", "task_id": "task-1", "kind": "start", "model": "m",
        "state": "running", "message": ""}


def _envelope(code: str, message: str = "boom", **error: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": None, "param": None,
                      "details": None, **error}, "timestamp": "t", "path": "/p"}


def _mock(handler: Any) -> Client:
    return Client("http://gateway.test", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(("status", "cls"), [
    (400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError),
    (404, NotFoundError), (409, ConflictError), (413, BadRequestError),
    (418, BadRequestError), (422, ValidationError), (429, RateLimitError),
    (500, ServerError), (502, ServerError), (503, UnavailableError), (504, GatewayTimeout),
])
def test_error_from_status(status: int, cls: type[ModelfleetError]) -> None:
    body = _envelope("SOME_CODE", "it failed", param="field", details={"k": 1})
    err = error_from(status, body)
    assert type(err) is cls and err.status == status
    assert (err.code, err.message, err.param, err.details) == \
        ("SOME_CODE", "it failed", "field", {"k": 1})
    assert str(err) == "SOME_CODE: it failed" and err.body is body


def test_error_from_without_the_envelope() -> None:
    err = error_from(502, None, text="<html>Bad Gateway</html>")
    assert isinstance(err, ServerError) and err.code == "HTTP_502"
    assert err.message == "<html>Bad Gateway</html>"
    err = error_from(500, {"error": "a bare string"})
    assert err.message == "a bare string" and err.code == "HTTP_500"


def test_error_from_a_stream_event_uses_its_type() -> None:
    err = error_from(None, _envelope("INFERENCE_TIMEOUT", type="timeout_error"))
    assert isinstance(err, GatewayTimeout) and err.status == 504
    assert isinstance(error_from(None, _envelope("X")), ServerError)


def test_rate_limit_carries_retry_after() -> None:
    client = _mock(lambda req: httpx.Response(429, json=_envelope("RATE_LIMITED"),
                                              headers={"Retry-After": "7"}))
    with pytest.raises(RateLimitError) as caught:
        client.get_model("m")
    assert caught.value.retry_after == 7.0 and caught.value.code == "RATE_LIMITED"


def test_sse_reader_framing() -> None:
    reader = SSEReader(completion_decoder(GenerationChunk))
    lines = [": keep-alive", "", 'data: {"id": "g", "choices":', 'data: [{"text": "a"}]}', "",
             "event: ignored", 'data:{"choices": [{"text": "b"}]}', "", "data: [DONE]", ""]
    items = [item for line in lines for item in reader.feed(line)]
    assert [i.text for i in items] == ["a", "b"] and items[0].id == "g"
    assert reader.done


def test_sse_error_event_is_raised() -> None:
    reader = SSEReader(completion_decoder(GenerationChunk))
    event = json.dumps(_envelope("UPSTREAM_ERROR", "engine died", type="server_error"))
    reader.feed(f"data: {event}")
    with pytest.raises(ServerError, match="engine died"):
        reader.feed("")


def test_log_events_end_the_stream() -> None:
    reader = SSEReader(log_event)
    first = reader.feed('data: {"type": "historical", "log": {"timestamp": 1700000000.5, '
                        '"message": "hi"}}') + reader.feed("")
    assert first[0].log is not None and first[0].log.timestamp.year == 2023
    assert not reader.done
    last = reader.feed('data: {"type": "stream_end", "message": "log closed"}') + \
        reader.feed("")
    assert last[0].final and reader.done


def test_unknown_fields_survive() -> None:
    model = Model.model_validate({"id": "model-1", "name": "m", "brand_new": {"x": 1}})
    assert model.brand_new == {"x": 1}  # type: ignore[attr-defined]


def test_token_is_sent_as_bearer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok"})

    with Client("http://gateway.test", token="sk-123",
                transport=httpx.MockTransport(handler)) as client:
        assert client.health().status == "ok"
    assert seen[0].headers["authorization"] == "Bearer sk-123"
    assert seen[0].headers["user-agent"].startswith("modelfleet-client/")


def test_malformed_answers() -> None:
    client = _mock(lambda req: httpx.Response(200, text="<html>not the API</html>"))
    with pytest.raises(MalformedResponseError, match="not JSON"):
        client.get_model("m")
    client = _mock(lambda req: httpx.Response(200, json={"name": "m"}))
    with pytest.raises(MalformedResponseError, match="Model: id"):
        client.get_model("m")
    client = _mock(lambda req: httpx.Response(200, json={"logs": "nope"}))
    with pytest.raises(MalformedResponseError):
        client.logs("m")


def test_wait_task_times_out() -> None:
    polls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        polls.append(request.url.path)
        return httpx.Response(200, json=TASK)

    with pytest.raises(OperationTimeout, match="still running") as caught:
        _mock(handler).wait_task("task-1", timeout=0.3, interval=0.05)
    assert isinstance(caught.value, TimeoutError)
    assert len(polls) >= 3 and set(polls) == {"/api/tasks/task-1"}


def test_unreachable_gateway() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(url) as client, pytest.raises(GatewayUnreachable) as caught:
        client.list_models()
    assert isinstance(caught.value, ConnectionError) and url in str(caught.value)
    assert caught.value.code == "GATEWAY_UNREACHABLE"
    with Client(url) as client, pytest.raises(GatewayUnreachable):
        list(client.stream_logs("m"))


async def test_unreachable_gateway_async() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncClient(url) as client:
        with pytest.raises(GatewayUnreachable):
            await client.get_config()
        with pytest.raises(GatewayUnreachable):
            async for _ in client.stream_logs("m"):
                pass

