"""Request bodies of the engine's API, parsed and validated into plain dataclasses.

Every ``parse_*`` function takes the decoded JSON object and either returns a request
the handlers can use without further checks, or raises
:class:`~modelfleet.errors.InvalidRequestError` (400) naming the offending parameter.
Unknown fields are ignored (clients send vendor extras); the ``model`` field is not
checked, the gateway has already resolved it. Limits that need the model (context length,
vocabulary size) are checked later, by the generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelfleet.engines.builtin.validate import (
    Body,
    bad,
    int_list,
    opt_bool,
    opt_dict,
    opt_float,
    opt_int,
    opt_str,
    str_list,
    text_or_tokens,
)
from modelfleet.errors import InvalidRequestError

MAX_N = 16
MAX_STOP = 16
# torch.Generator.manual_seed accepts exactly this range.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_IMAGE_PARTS = {"image_url", "input_image", "image"}
_AUDIO_PARTS = {"input_audio", "audio_url", "audio"}


@dataclass
class SamplingParams:
    """How to pick tokens and when to stop; one set per request, shared by its choices."""

    max_tokens: int | None = None  # None: what the context leaves, capped (config)
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: off
    n: int = 1
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    ignore_eos: bool = False
    min_tokens: int = 0
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False


@dataclass
class ChatRequest:
    """``POST /v1/chat/completions``: messages flattened to text, template options."""

    messages: list[dict[str, Any]]
    params: SamplingParams
    stream: bool = False
    include_usage: bool = False
    tools: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompletionRequest:
    """``POST /v1/completions``: one or more prompts (text or token ids)."""

    prompts: list[str | list[int]]
    params: SamplingParams
    stream: bool = False
    include_usage: bool = False
    echo: bool = False


@dataclass
class EmbeddingRequest:
    """``POST /v1/embeddings``: texts or token-id lists."""

    inputs: list[str | list[int]]
    encoding_format: str = "float"
    dimensions: int | None = None


@dataclass
class RerankRequest:
    """``POST /v1/rerank``: documents as plain strings; ``top_n`` None means all."""

    query: str
    documents: list[str]
    top_n: int | None = None
    return_documents: bool = True


@dataclass
class ScoreRequest:
    """``POST /v1/score``: the (text_1, text_2) pairs to score."""

    pairs: list[tuple[str, str]]


@dataclass
class TokenizeRequest:
    """``POST /tokenize``: exactly one of ``prompt`` and ``messages`` is set."""

    prompt: str | None
    messages: list[dict[str, Any]] | None
    add_special_tokens: bool
    add_generation_prompt: bool


def _sampling(body: Body, defaults: dict[str, Any], max_tokens: int | None) -> SamplingParams:
    stop = body.get("stop")
    seed = opt_int(body, "seed", lo=SEED_MIN, hi=SEED_MAX)
    bias_raw = opt_dict(body, "logit_bias")
    logit_bias: dict[int, float] = {}
    for key, value in bias_raw.items():
        if not str(key).isdigit():
            raise bad(f"'logit_bias' keys must be token ids, got {key!r}", "logit_bias")
        try:
            logit_bias[int(key)] = opt_float(
                {"logit_bias": value}, "logit_bias", 0.0, lo=-100, hi=100
            )
        except InvalidRequestError as exc:
            raise bad(f"'logit_bias[{key}]': {exc.message}", "logit_bias") from exc
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=opt_float(body, "temperature", defaults.get("temperature", 1.0), lo=0, hi=2),
        top_p=opt_float(body, "top_p", defaults.get("top_p", 1.0), lo=0, hi=1, lo_open=True),
        top_k=opt_int(body, "top_k", defaults.get("top_k", 0), lo=-1) or 0,
        n=opt_int(body, "n", 1, lo=1, hi=MAX_N) or 1,
        stop=[]
        if stop is None
        else str_list(stop, "stop", max_items=MAX_STOP, allow_empty_items=False),
        stop_token_ids=int_list(body.get("stop_token_ids") or [], "stop_token_ids"),
        seed=seed,
        presence_penalty=opt_float(body, "presence_penalty", 0.0, lo=-2, hi=2),
        frequency_penalty=opt_float(body, "frequency_penalty", 0.0, lo=-2, hi=2),
        repetition_penalty=opt_float(
            body,
            "repetition_penalty",
            defaults.get("repetition_penalty", 1.0),
            lo=0,
            hi=10,
            lo_open=True,
        ),
        logit_bias=logit_bias,
        ignore_eos=opt_bool(body, "ignore_eos", False),
        min_tokens=opt_int(body, "min_tokens", 0, lo=0) or 0,
        skip_special_tokens=opt_bool(body, "skip_special_tokens", True),
        include_stop_str_in_output=opt_bool(body, "include_stop_str_in_output", False),
    )


def _stream_flags(body: Body) -> tuple[bool, bool]:
    stream = opt_bool(body, "stream", False)
    options = opt_dict(body, "stream_options")
    return stream, stream and opt_bool(options, "include_usage", False)


def _flatten_content(content: Any, where: str) -> str:
    """Text parts joined by newlines (as vLLM does); media parts are refused."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad(f"'{where}' must be a string or a list of content parts", where)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in _IMAGE_PARTS:
            raise bad("this model does not accept images", f"{where}[{j}]")
        elif kind in _AUDIO_PARTS:
            raise bad("this model does not accept audio", f"{where}[{j}]")
        else:
            raise bad(f"'{where}[{j}]' is not a supported content part ({kind!r})", where)
    return "\n".join(texts)


def parse_messages(value: Any) -> list[dict[str, Any]]:
    """Chat messages with their content flattened to text, ready for a chat template."""
    if not isinstance(value, list) or not value:
        raise bad("'messages' must be a non-empty list", "messages")
    out = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(f"'{where}' must be an object", where)
        role = message.get("role")
        if role not in _ROLES:
            raise bad(f"'{where}.role' must be one of {sorted(_ROLES)}", f"{where}.role")
        content = message.get("content")
        if content is None and not (role == "assistant" and message.get("tool_calls")):
            raise bad(f"'{where}.content' is required", f"{where}.content")
        # Most chat templates predate the "developer" role; it means "system".
        item: dict[str, Any] = {
            "role": "system" if role == "developer" else role,
            "content": "" if content is None else _flatten_content(content, f"{where}.content"),
        }
        for key in ("name", "tool_calls", "tool_call_id"):
            if message.get(key) is not None:
                item[key] = message[key]
        out.append(item)
    return out


def _refuse_unsupported(body: Body, *, chat: bool) -> None:
    logprobs = body.get("logprobs")
    if logprobs not in (None, False) or (chat and body.get("top_logprobs") not in (None, 0)):
        raise bad("logprobs are not supported by the built-in engine", "logprobs")
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict) or response_format.get("type") != "text"
    ):
        raise bad("response_format other than text is not supported", "response_format")
    tool_choice = body.get("tool_choice")
    if tool_choice is not None and tool_choice not in ("none", "auto"):
        raise bad("tool_choice 'required' or a named tool is not supported", "tool_choice")


def parse_chat(body: Body, defaults: dict[str, Any]) -> ChatRequest:
    """``POST /v1/chat/completions``; ``max_completion_tokens`` wins over ``max_tokens``."""
    if "messages" not in body:
        raise bad("'messages' is required", "messages")
    messages = parse_messages(body["messages"])
    _refuse_unsupported(body, chat=True)
    max_tokens = opt_int(body, "max_completion_tokens", lo=1)
    if max_tokens is None:
        max_tokens = opt_int(body, "max_tokens", lo=1)
    tools = body.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(isinstance(t, dict) for t in tools)
    ):
        raise bad("'tools' must be a list of objects", "tools")
    stream, include_usage = _stream_flags(body)
    return ChatRequest(
        messages=messages,
        params=_sampling(body, defaults, max_tokens),
        stream=stream,
        include_usage=include_usage,
        tools=tools or None,
        add_generation_prompt=opt_bool(body, "add_generation_prompt", True),
        continue_final_message=opt_bool(body, "continue_final_message", False),
        chat_template_kwargs=opt_dict(body, "chat_template_kwargs"),
    )


def parse_completion(body: Body, defaults: dict[str, Any]) -> CompletionRequest:
    """``POST /v1/completions``; ``max_tokens`` 0 is allowed only with ``echo``."""
    if body.get("prompt") is None:
        raise bad("'prompt' is required", "prompt")
    prompts = text_or_tokens(body["prompt"], "prompt")
    _refuse_unsupported(body, chat=False)
    if body.get("suffix"):
        raise bad("'suffix' is not supported", "suffix")
    echo = opt_bool(body, "echo", False)
    max_tokens = opt_int(body, "max_tokens", lo=0 if echo else 1)
    params = _sampling(body, defaults, max_tokens)
    best_of = opt_int(body, "best_of", lo=1)
    if best_of is not None and best_of != params.n:
        raise bad("'best_of' different from 'n' is not supported", "best_of")
    stream, include_usage = _stream_flags(body)
    return CompletionRequest(prompts, params, stream, include_usage, echo)


def parse_embedding(body: Body) -> EmbeddingRequest:
    """``POST /v1/embeddings``."""
    if body.get("input") is None:
        raise bad("'input' is required", "input")
    inputs = text_or_tokens(body["input"], "input")
    fmt = opt_str(body, "encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise bad("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    return EmbeddingRequest(inputs, fmt, opt_int(body, "dimensions", lo=1))


def parse_rerank(body: Body) -> RerankRequest:
    """``POST /v1/rerank`` (Jina/Cohere shape); documents may be strings or ``{"text"}``."""
    query = opt_str(body, "query")
    if query is None:
        raise bad("'query' is required", "query")
    documents = body.get("documents")
    if not isinstance(documents, list):
        raise bad("'documents' must be a list", "documents")
    texts = []
    for i, doc in enumerate(documents):
        if isinstance(doc, dict) and isinstance(doc.get("text"), str):
            doc = doc["text"]
        if not isinstance(doc, str):
            raise bad(f"'documents[{i}]' must be a string or an object with 'text'", "documents")
        texts.append(doc)
    top_n = opt_int(body, "top_n", lo=0)
    return RerankRequest(query, texts, top_n or None, opt_bool(body, "return_documents", True))


def parse_score(body: Body) -> ScoreRequest:
    """``POST /v1/score`` (vLLM): ``text_1`` against each ``text_2``, or pairwise lists."""
    for name in ("text_1", "text_2"):
        if body.get(name) is None:
            raise bad(f"'{name}' is required", name)
    first = str_list(body["text_1"], "text_1", max_items=2048)
    second = str_list(body["text_2"], "text_2", max_items=2048)
    if len(first) == 1:
        first = first * len(second)
    if len(first) != len(second):
        raise bad("'text_1' and 'text_2' must have the same length", "text_2")
    return ScoreRequest(list(zip(first, second, strict=True)))


def parse_tokenize(body: Body) -> TokenizeRequest:
    """``POST /tokenize`` (vLLM): ``prompt`` or ``messages``."""
    if body.get("messages") is not None:
        return TokenizeRequest(
            prompt=None,
            messages=parse_messages(body["messages"]),
            add_special_tokens=opt_bool(body, "add_special_tokens", False),
            add_generation_prompt=opt_bool(body, "add_generation_prompt", True),
        )
    prompt = opt_str(body, "prompt")
    if prompt is None:
        raise bad("'prompt' or 'messages' is required", "prompt")
    return TokenizeRequest(prompt, None, opt_bool(body, "add_special_tokens", True), False)


def parse_detokenize(body: Body) -> list[int]:
    """``POST /detokenize`` (vLLM): the token ids."""
    if body.get("tokens") is None:
        raise bad("'tokens' is required", "tokens")
    return int_list(body["tokens"], "tokens")
