"""``check``: the request path's quick acceptance of plain chat requests never accepts
what pydantic refuses, and refuses with pydantic's own error."""

import random
from typing import Any

import pytest

from modelfleet.errors import InvalidRequestError
from modelfleet.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    _plain_chat,
    check,
    validate,
)

USER = {"role": "user", "content": "hi"}
# Values per field: valid ones, edge ones and wrong ones, all mixed below.
VALUES: dict[str, list[Any]] = {
    "model": [None, "m", "x" * 512, "x" * 513, 5, ""],
    "messages": [[USER], [], [USER] * 2048, [USER] * 2049, [{"role": "", "content": "x"}],
                 [{"role": "r" * 65}], [{"role": "user", "content": None}],
                 [{"role": "user", "content": [{"type": "text", "text": "a"}]}],
                 [{"role": "user", "content": ["a"]}], [{"role": "user", "content": 5}],
                 [{"role": "user", "content": "x", "name": 3}], ["hi"], "hi",
                 [{"role": "user", "content": "x", "tool_call_id": "t"}],
                 [{"role": 1, "content": "x"}], [{"content": "x"}]],
    "max_tokens": [None, 1, 0, -1, 10**9, 1.0, 1.5, "5", True],
    "max_completion_tokens": [None, 1, 0, "2", False],
    "temperature": [None, 0, 0.0, 2, 2.0, 2.01, -0.1, "1", True, 1],
    "top_p": [None, 0, 0.0, 1, 1.0, 0.5, 1.01, "0.5"],
    "n": [None, 1, 16, 17, 0, 2.0, True],
    "stream": [None, True, False, 1, 0, "true", "yes"],
    "stream_options": [None, {}, {"include_usage": True}, {"include_usage": "yes"},
                       {"include_usage": 1}, [], "x", {"other": 1}],
    "stop": [None, "x", "x" * 16, "x" * 17, [], ["a"] * 16, ["a"] * 17, [1], [None], 5],
    "seed": [None, 0, -5, 2**70, 1.0, "1"],
    "presence_penalty": [None, -2, 2, 2.5, -2.5, "0"],
    "frequency_penalty": [None, 0.5, 3, True],
    "user": [None, "u", 5, ["u"]],
    "top_k": [1, "any", None, {"a": 1}],  # extra fields: anything goes
}


def _accepted(payload: Any) -> bool:
    try:
        validate(ChatCompletionRequest, payload)
    except InvalidRequestError:
        return False
    return True


def test_check_plain_chat_is_a_subset_of_what_pydantic_accepts() -> None:
    rng = random.Random(7)
    plain = 0
    for _ in range(4000):
        payload = {"messages": [USER]}
        for field in rng.sample(sorted(VALUES), rng.randint(0, 6)):
            payload[field] = rng.choice(VALUES[field])
        if _plain_chat(payload):
            plain += 1
            assert _accepted(payload), payload
    assert plain > 200  # the quick path is really taken for ordinary requests


@pytest.mark.parametrize("field", sorted(VALUES))
def test_check_agrees_with_validate_field_by_field(field: str) -> None:
    for value in VALUES[field]:
        payload = {"messages": [USER], field: value}
        if _plain_chat(payload):
            assert _accepted(payload), payload
        expected = _accepted(payload)
        try:
            check(ChatCompletionRequest, payload)
            got = True
        except InvalidRequestError:
            got = False
        assert got == expected, payload


def test_check_takes_the_quick_path_for_ordinary_requests() -> None:
    for payload in (
        {"model": "m", "messages": [USER], "max_tokens": 20},
        {"model": "m", "messages": [{"role": "system", "content": "be brief"}, USER],
         "temperature": 0.7, "top_p": 0.9, "stream": True,
         "stream_options": {"include_usage": True}, "stop": ["\n"], "seed": 3, "n": 1},
        {"messages": [USER], "ignore_eos": True, "top_k": 3},
    ):
        assert _plain_chat(payload), payload


def test_check_refuses_with_pydantics_error() -> None:
    with pytest.raises(InvalidRequestError) as info:
        check(ChatCompletionRequest, {"messages": [USER], "temperature": 3})
    assert info.value.param == "temperature" and info.value.status == 400
    with pytest.raises(InvalidRequestError, match="JSON object"):
        check(ChatCompletionRequest, [USER])
    with pytest.raises(InvalidRequestError, match="prompt"):
        check(CompletionRequest, {"model": "m"})
    assert not _plain_chat({"messages": [USER], "_private": 1})
