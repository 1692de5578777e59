"""Which requests an encoder sees, and which failures move a stage to another instance."""

import pytest

from modelfleet.errors import (
    DownstreamFailedError,
    FleetError,
    InferenceTimeoutError,
    InvalidRequestError,
    QueueFullError,
    UpstreamError,
)
from modelfleet.gateway.disagg import has_media, retryable


def _chat(*content: object) -> dict[str, object]:
    return {"messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": list(content)}]}


@pytest.mark.parametrize(("payload", "expected"), [
    (_chat({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
           {"type": "text", "text": "what is this"}), True),
    (_chat({"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}), True),
    (_chat({"type": "text", "text": "hi"}), False),
    ({"messages": [{"role": "user", "content": "an image_url in words"}]}, False),
    ({"prompt": "image_url"}, False),
    ({"messages": "not a list"}, False),
    ({"messages": [None, {"content": [None, "x"]}]}, False),
])
def test_media_parts_send_a_chat_to_the_encoder(payload: dict, expected: bool) -> None:
    assert has_media(payload) is expected


def test_a_stage_is_retried_when_its_instance_broke() -> None:
    assert retryable(UpstreamError("broken pipe"))
    assert retryable(DownstreamFailedError("unreachable"))
    engine_500 = FleetError("boom")
    assert retryable(engine_500)
    assert not retryable(InferenceTimeoutError("slow"))  # it may still be running
    assert not retryable(QueueFullError("busy"))
    assert not retryable(InvalidRequestError("bad"))
