import pytest

from modelfleet.errors import InvalidRequestError
from modelfleet.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
    validate,
)

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_protocol_unknown_fields_pass() -> None:
    req = validate(ChatCompletionRequest, {**CHAT, "ignore_eos": True, "top_k": 3})
    assert req.model_extra == {"ignore_eos": True, "top_k": 3}


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", 3), ("top_p", 0), ("n", 0), ("n", 1000), ("max_tokens", 0),
    ("max_tokens", "many"), ("stop", ["x"] * 50), ("messages", []), ("stream", "yes please"),
])
def test_protocol_chat_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidRequestError) as info:
        validate(ChatCompletionRequest, {**CHAT, field: value})
    assert info.value.param is not None and info.value.param.startswith(field)
    assert info.value.status == 400


def test_protocol_requires_an_object_and_the_core_fields() -> None:
    with pytest.raises(InvalidRequestError, match="JSON object"):
        validate(ChatCompletionRequest, [CHAT])
    with pytest.raises(InvalidRequestError, match="prompt"):
        validate(CompletionRequest, {"model": "m"})
    with pytest.raises(InvalidRequestError, match="input"):
        validate(EmbeddingRequest, {"model": "m", "input": []})
    with pytest.raises(InvalidRequestError, match="documents"):
        validate(RerankRequest, {"query": "q", "documents": []})


def test_protocol_accepts_openai_shapes() -> None:
    validate(CompletionRequest, {"prompt": ["a", "b"], "max_tokens": 5, "stream": True,
                                 "stream_options": {"include_usage": True}})
    validate(EmbeddingRequest, {"input": [[1, 2, 3]], "encoding_format": "base64"})
    validate(RerankRequest, {"query": "q", "documents": ["a", {"text": "b"}], "top_n": 1})
    validate(ChatCompletionRequest, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi"}]}]})
