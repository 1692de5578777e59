"""Wire models of the OpenAI-style API.

Requests allow extra fields: whatever we do not know reaches the engine
untouched (the relay forwards the client's bytes; these models only
validate). Fields outside the OpenAI spec are marked ``(not in OpenAI)``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelfleet.errors import InvalidRequestError

MAX_N = 16
MAX_STOP = 16
MAX_MESSAGES = 2048
MAX_DOCUMENTS = 1000


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = Field(
        None, max_length=512, description="Model id or alias; may be omitted when one fits."
    )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=64)
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


class _Sampling(_Request):
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=MAX_N)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(None, max_length=MAX_STOP)
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    user: str | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(min_length=1)
    echo: bool | None = None


class EmbeddingRequest(_Request):
    input: str | list[str] | list[int] | list[list[int]] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str


class RerankRequest(_Request):
    """Jina / Cohere rerank (not in OpenAI)."""

    query: str = Field(min_length=1)
    documents: list[str | RerankDocument] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    top_n: int | None = Field(None, ge=1)
    return_documents: bool | None = True


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class ChatChoice(BaseModel):
    index: int
    message: dict[str, Any]
    finish_reason: str | None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    id: str | None = None
    object: Literal["rerank"] = "rerank"
    model: str
    results: list[RerankResult]
    usage: Usage | None = None


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models`` ``data``, with the manager's ``aliases``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "modelfleet"
    aliases: list[str] = []
    status: str | None = Field(None, description="(not in OpenAI) lifecycle state")


class ModelEntry(BaseModel):
    """One entry of ``GET /v1/models`` ``models`` (the TGI-style gateway's list)."""

    id: str
    name: str
    status: str
    supports: list[str]
    endpoint: str | None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
    models: list[ModelEntry]


def validate(model: type[BaseModel], payload: Any) -> BaseModel:
    """Validate ``payload``; the first problem becomes a 400 naming its field."""
    if not isinstance(payload, dict):
        raise InvalidRequestError("request body must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequestError(
            f"{param}: {first['msg']}" if param else first["msg"], param=param
        ) from None


def check(model: type[BaseModel], payload: Any) -> None:
    """``validate`` for the request path, whose answer it does not need: a plainly valid
    chat request (every known field of its exact JSON type and in range) is accepted
    without building the model; anything else goes to pydantic, which decides and names
    the problem. The plain check accepts only what pydantic accepts (tests compare them)."""
    if model is ChatCompletionRequest and type(payload) is dict and _plain_chat(payload):
        return
    validate(model, payload)


def _num(value: object, low: float, high: float, low_open: bool = False) -> bool:
    if type(value) is not int and type(value) is not float:
        return value is None
    return (low < value if low_open else low <= value) and value <= high


def _count(value: object, low: int, high: int | None = None) -> bool:
    if type(value) is not int:
        return value is None
    return low <= value and (high is None or value <= high)


def _optional(value: object, kind: type) -> bool:
    return value is None or type(value) is kind


def _plain_message(message: object) -> bool:
    if type(message) is not dict:
        return False
    role = message.get("role")
    if type(role) is not str or not 1 <= len(role) <= 64:
        return False
    content = message.get("content")
    if type(content) is list:
        if not all(type(part) is dict for part in content):
            return False
    elif content is not None and type(content) is not str:
        return False
    return _optional(message.get("name"), str) and not any(k[:1] == "_" for k in message)


_CHAT_FIELDS = {
    "model": lambda v: v is None or (type(v) is str and len(v) <= 512),
    "messages": lambda v: (type(v) is list and 1 <= len(v) <= MAX_MESSAGES
                           and all(_plain_message(m) for m in v)),
    "max_tokens": lambda v: _count(v, 1),
    "max_completion_tokens": lambda v: _count(v, 1),
    "n": lambda v: _count(v, 1, MAX_N),
    "seed": lambda v: _count(v, -(2**63), 2**64),
    "temperature": lambda v: _num(v, 0, 2),
    "top_p": lambda v: _num(v, 0, 1, low_open=True),
    "presence_penalty": lambda v: _num(v, -2, 2),
    "frequency_penalty": lambda v: _num(v, -2, 2),
    "stream": lambda v: _optional(v, bool),
    "user": lambda v: _optional(v, str),
    "stop": lambda v: (v is None or (type(v) is str and len(v) <= MAX_STOP)
                       or (type(v) is list and len(v) <= MAX_STOP
                           and all(type(x) is str for x in v))),
    "stream_options": lambda v: v is None or (
        type(v) is dict and _optional(v.get("include_usage"), bool)
        and not any(k[:1] == "_" for k in v)),
}


def _plain_chat(payload: dict[str, Any]) -> bool:
    if "messages" not in payload:
        return False
    for key, value in payload.items():
        rule = _CHAT_FIELDS.get(key)
        if rule is None:
            if key[:1] == "_":  # not a plain extra field: let pydantic judge it
                return False
        elif not rule(value):
            return False
    return True
