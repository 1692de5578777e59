import pytest
from pydantic import ValidationError

from modelfleet.errors import (
    DownstreamFailedError,
    FleetError,
    InferenceTimeoutError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelStartError,
    QueueFullError,
    UpstreamError,
)
from modelfleet.gateway.relay import upstream_error
from modelfleet.protocol.generate import (
    GenerateRequest,
    ModelGenerateRequest,
    chat_payload,
    generate_response,
    tgi_error,
)
from modelfleet.protocol.openai import validate
from modelfleet.settings import Limits

NO_LIMITS = Limits()


def _req(**parameters: object) -> GenerateRequest:
    return GenerateRequest.model_validate({"model_id": "qwen2", "inputs": "hi",
                                           "parameters": parameters})


def test_generate_defaults_of_seed_004() -> None:
    req = GenerateRequest.model_validate({"model_id": "qwen2", "inputs": "hi"})
    assert req.scenario is None
    payload = chat_payload(req, "PROMPT", NO_LIMITS)
    assert payload == {"messages": [{"role": "user", "content": "PROMPT"}], "max_tokens": 128,
                       "temperature": 0.7, "top_p": 0.9, "stream": False}


def test_generate_parameters_are_passed_through() -> None:
    payload = chat_payload(_req(max_new_tokens=200, temperature=0.5, top_p=0.8, stop=["\n"],
                                seed=7), "p", NO_LIMITS)
    assert payload["max_tokens"] == 200 and payload["temperature"] == 0.5
    assert payload["top_p"] == 0.8 and payload["stop"] == ["\n"]
    assert payload["seed"] == 7  # unknown parameters reach the engine


def test_generate_do_sample_false_is_greedy() -> None:
    assert chat_payload(_req(do_sample=False, temperature=1.3), "p", NO_LIMITS)[
        "temperature"] == 0.0
    assert chat_payload(_req(do_sample=False), "p", Limits(default_temperature=0.4))[
        "temperature"] == 0.0


def test_generate_model_limits_apply() -> None:
    limits = Limits(max_tokens=64, default_temperature=0.2)
    payload = chat_payload(_req(), "p", limits)
    assert payload["max_tokens"] == 64 and payload["temperature"] == 0.2
    assert chat_payload(_req(temperature=0.9), "p", limits)["temperature"] == 0.9
    # An explicit value past the cap is passed on; the proxy refuses it (400), as everywhere.
    assert chat_payload(_req(max_new_tokens=100), "p", limits)["max_tokens"] == 100


def test_generate_extra_parameters_cannot_override_the_call() -> None:
    payload = chat_payload(_req(stream=True, messages=[]), "p", NO_LIMITS)
    assert payload["stream"] is False and payload["messages"][0]["content"] == "p"


@pytest.mark.parametrize(("body", "field"), [
    ({"inputs": "x"}, "model_id"),
    ({"model_id": "m"}, "inputs"),
    ({"model_id": 3, "inputs": "x"}, "model_id"),
    ({"model_id": "m", "inputs": ["x"]}, "inputs"),
    ({"model_id": "m", "inputs": "x", "parameters": {"temperature": 2.5}}, "temperature"),
    ({"model_id": "m", "inputs": "x", "parameters": {"temperature": "0.5"}}, "temperature"),
    ({"model_id": "m", "inputs": "x", "parameters": {"max_new_tokens": 0}}, "max_new_tokens"),
    ({"model_id": "m", "inputs": "x", "parameters": {"max_new_tokens": 1.5}}, "max_new_tokens"),
    ({"model_id": "m", "inputs": "x", "parameters": {"top_p": 0}}, "top_p"),
    ({"model_id": "m", "inputs": "x", "parameters": {"do_sample": "false"}}, "do_sample"),
    ({"model_id": "m", "inputs": "x", "parameters": {"stop": "\n"}}, "stop"),
    ({"model_id": "m", "inputs": "x", "parameters": []}, "parameters"),
])
def test_generate_rejects_wrong_types_naming_the_field(body: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        GenerateRequest.model_validate(body)
    assert field in str(info.value.errors()[0]["loc"])


def test_generate_response_reshapes_a_chat_completion() -> None:
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "a b"}}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    out = generate_response(answer, "Qwen2-7B-Instruct-GPTQ-Int4")
    assert out.model_dump() == {"generated_text": "a b", "model": "Qwen2-7B-Instruct-GPTQ-Int4",
                                "tokens": 2}
    no_usage = generate_response({"choices": [{"message": {"content": "x y z"}}]}, "m")
    assert no_usage.tokens == 3
    with pytest.raises(UpstreamError):
        generate_response({"choices": []}, "m")


def test_generate_errors_map_to_seed_004_codes() -> None:
    not_found = tgi_error(ModelNotFoundError("no such model", param="model"))
    assert (not_found.status, not_found.code, not_found.param) == (400, "MODEL_NOT_FOUND",
                                                                   "model_id")
    timeout = InferenceTimeoutError("slow")
    assert tgi_error(timeout) is timeout
    engine_504 = tgi_error(upstream_error(504, b'{"error": "slow"}'))
    assert (engine_504.status, engine_504.code) == (504, "INFERENCE_TIMEOUT")
    for kept in (DownstreamFailedError("gone"), QueueFullError("full"),
                 ModelStartError("broke"), InvalidRequestError("bad")):
        assert tgi_error(kept) is kept
    for engine in (upstream_error(500, b'{"error": {"message": "boom", "code": "X"}}'),
                   upstream_error(503, b"overloaded"), UpstreamError("broke the connection")):
        mapped = tgi_error(engine)
        assert (mapped.status, mapped.code) == (500, "UPSTREAM_SERVER_ERROR")
        assert mapped.message == engine.message
        assert mapped.details is not None and mapped.details["alias"] == "TGI_SERVER_ERROR"
    client_error = upstream_error(400, b'{"error": {"message": "too long"}}')
    assert tgi_error(client_error) is client_error
    assert isinstance(tgi_error(FleetError("x")), FleetError)


def test_model_generate_request_is_seed_002_body() -> None:
    body = {"prompt": "Hello, how are you?", "max_tokens": 100, "temperature": 0.7,
            "top_p": 0.9, "top_k": 40, "stop": ["\n", "Human:"], "stream": False}
    req = validate(ModelGenerateRequest, body)
    assert isinstance(req, ModelGenerateRequest) and req.top_k == 40
    with pytest.raises(InvalidRequestError, match="top_k"):
        validate(ModelGenerateRequest, {**body, "top_k": -5})
    with pytest.raises(InvalidRequestError, match="prompt"):
        validate(ModelGenerateRequest, {"max_tokens": 3})


