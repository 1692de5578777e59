import orjson

from modelfleet.errors import (
    FleetError,
    InvalidRequestError,
    ModelNotFoundError,
    QueueFullError,
    as_fleet_error,
    render_error,
    sse_error_event,
)


def test_errors_render_the_one_shape() -> None:
    status, headers, body = render_error(ModelNotFoundError("no such model", param="model"),
                                         "/v1/chat/completions")
    data = orjson.loads(body)
    assert status == 404
    assert set(data) == {"error", "timestamp", "path"}
    assert data["error"] == {"message": "no such model", "type": "not_found_error",
                             "code": "MODEL_NOT_FOUND", "param": "model", "details": None}
    assert data["path"] == "/v1/chat/completions"
    assert (b"content-type", b"application/json") in headers


def test_errors_flavours_for_seed_routes() -> None:
    _, _, body = render_error(ModelNotFoundError("x"), "/v1/generate")
    assert orjson.loads(body)["error_code"] == "MODEL_NOT_FOUND"
    _, _, body = render_error(ModelNotFoundError("gone"), "/api/models/a/info")
    data = orjson.loads(body)
    assert data["success"] is False and data["message"] == "gone"


def test_errors_retry_after_header_and_extra_fields() -> None:
    exc = QueueFullError("busy", retry_after=2.4, extra={"queue_size": 10, "max_queue_size": 10})
    status, headers, body = render_error(exc, "/v1/completions")
    assert status == 503
    assert (b"retry-after", b"2") in headers
    assert orjson.loads(body)["queue_size"] == 10


def test_errors_unknown_exception_hides_internals() -> None:
    err = as_fleet_error(KeyError("secret-path"))
    assert err.status == 500 and "secret-path" not in err.message
    assert as_fleet_error(InvalidRequestError("x")).status == 400


def test_errors_sse_event_then_done() -> None:
    event = sse_error_event(FleetError("boom"), "/v1/chat/completions")
    first, second = event.split(b"\n\n")[:2]
    assert orjson.loads(first.removeprefix(b"data: "))["error"]["message"] == "boom"
    assert second == b"data: [DONE]"
