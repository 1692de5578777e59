"""Request parsing and validation of the built-in engine (no model needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelfleet.engines.builtin.config import EngineArgs, detect_task
from modelfleet.engines.builtin.protocol import (
    parse_chat,
    parse_completion,
    parse_detokenize,
    parse_embedding,
    parse_rerank,
    parse_score,
    parse_tokenize,
)
from modelfleet.errors import InvalidRequestError

USER = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": USER, **fields}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_completion_tokens": True}, "max_completion_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.1}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": 17}, "n"),
        ({"stop": 3}, "stop"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"seed": "x"}, "seed"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "logprobs"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ],
)
def test_chat_rejects_bad_parameters(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_chat(chat(**fields), {})
    assert info.value.status == 400
    assert info.value.param == param
    assert info.value.message


def test_chat_requires_messages() -> None:
    with pytest.raises(InvalidRequestError, match="'messages' is required"):
        parse_chat({"model": "m"}, {})


def test_chat_refuses_images_with_a_clear_message() -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    with pytest.raises(InvalidRequestError, match="does not accept images") as info:
        parse_chat(chat(messages=[{"role": "user", "content": content}]), {})
    assert info.value.param == "messages[0].content[1]"


def test_chat_parses_content_parts_and_parameters() -> None:
    content = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    req = parse_chat(
        chat(
            messages=[
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": content},
            ],
            max_tokens=5,
            max_completion_tokens=7,
            temperature=0,
            top_p=0.5,
            n=3,
            stop="END",
            seed=42,
            stream=True,
            stream_options={"include_usage": True},
            ignore_eos=True,
            frequency_penalty=0.5,
            presence_penalty=-0.5,
            logit_bias={"12": -100},
        ),
        {},
    )
    assert req.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "one\ntwo"},
    ]
    p = req.params
    assert (p.max_tokens, p.temperature, p.top_p, p.n, p.stop, p.seed) == (
        7,
        0,
        0.5,
        3,
        ["END"],
        42,
    )
    assert p.ignore_eos and p.logit_bias == {12: -100.0}
    assert req.stream and req.include_usage


def test_chat_defaults_come_from_the_generation_config() -> None:
    req = parse_chat(chat(), {"temperature": 0.6, "top_p": 0.9})
    assert (req.params.temperature, req.params.top_p, req.params.max_tokens) == (0.6, 0.9, None)
    assert parse_chat(chat(temperature=0), {"temperature": 0.6}).params.temperature == 0


def test_include_usage_needs_stream() -> None:
    assert not parse_chat(chat(stream_options={"include_usage": True}), {}).include_usage


def test_completion_prompt_shapes() -> None:
    assert parse_completion({"prompt": "a"}, {}).prompts == ["a"]
    assert parse_completion({"prompt": ["a", "b"]}, {}).prompts == ["a", "b"]
    assert parse_completion({"prompt": [1, 2, 3]}, {}).prompts == [[1, 2, 3]]
    assert parse_completion({"prompt": [[1], [2, 3]]}, {}).prompts == [[1], [2, 3]]
    assert parse_completion({"prompt": "a", "echo": True, "max_tokens": 0}, {}).echo


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [1, -2]}, "prompt"),
        ({"prompt": ["a", 3]}, "prompt"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "a", "best_of": 3}, "best_of"),
        ({"prompt": "a", "suffix": "z"}, "suffix"),
        ({"prompt": "a", "logprobs": 2}, "logprobs"),
    ],
)
def test_completion_rejects(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_completion(body, {})
    assert info.value.param == param


def test_pooling_requests() -> None:
    assert parse_embedding({"input": ["a", "b"]}).inputs == ["a", "b"]
    assert (
        parse_embedding({"input": [[5, 6]], "encoding_format": "base64"}).encoding_format
        == "base64"
    )
    with pytest.raises(InvalidRequestError):
        parse_embedding({"input": "a", "encoding_format": "int8"})
    with pytest.raises(InvalidRequestError):
        parse_embedding({"input": "a", "dimensions": 0})
    with pytest.raises(InvalidRequestError, match="'input' is required"):
        parse_embedding({})
    rr = parse_rerank({"query": "q", "documents": ["a", {"text": "b"}], "top_n": 1})
    assert (rr.documents, rr.top_n, rr.return_documents) == (["a", "b"], 1, True)
    with pytest.raises(InvalidRequestError):
        parse_rerank({"query": "q", "documents": [{"title": "x"}]})
    with pytest.raises(InvalidRequestError):
        parse_rerank({"documents": ["a"]})
    assert parse_score({"text_1": "q", "text_2": ["a", "b"]}).pairs == [("q", "a"), ("q", "b")]
    with pytest.raises(InvalidRequestError):
        parse_score({"text_1": ["a", "b", "c"], "text_2": ["a", "b"]})


def test_tokenize_requests() -> None:
    req = parse_tokenize({"prompt": "hello"})
    assert req.prompt == "hello" and req.add_special_tokens
    req = parse_tokenize({"messages": USER})
    assert req.messages and not req.add_special_tokens and req.add_generation_prompt
    with pytest.raises(InvalidRequestError):
        parse_tokenize({})
    assert parse_detokenize({"tokens": [1, 2]}) == [1, 2]
    with pytest.raises(InvalidRequestError):
        parse_detokenize({"tokens": ["a"]})


def test_detect_task(tmp_path: Path, minilm_dir: Path) -> None:
    assert detect_task(minilm_dir) == "embed"
    (tmp_path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    assert detect_task(tmp_path) == "chat"
    (tmp_path / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    assert detect_task(tmp_path) == "rerank"
    (tmp_path / "modules.json").write_text("[]")
    (tmp_path / "config_sentence_transformers.json").write_text('{"model_type": "CrossEncoder"}')
    assert detect_task(tmp_path) == "rerank"
    (tmp_path / "config_sentence_transformers.json").write_text("{}")
    assert detect_task(tmp_path) == "embed"


def test_served_name_defaults_to_the_directory() -> None:
    assert EngineArgs(model="/models/tiny-chat/", port=1).name == "tiny-chat"
    assert EngineArgs(model="/models/tiny-chat", port=1, served_model_name="x").name == "x"
