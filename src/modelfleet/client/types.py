"""Typed results of the SDK: pydantic models of the gateway's answers.

Every model keeps fields it does not declare (``extra="allow"``), so a newer gateway's
additions reach the caller as attributes; declared fields are the ones the gateway
documents and that code is expected to read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from modelfleet.client.errors import MalformedResponseError

TASK_DONE = ("succeeded", "failed")
M = TypeVar("M", bound=BaseModel)


class Result(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Ack(Result):
    """An answer that only says it worked (a delete, for instance)."""

    success: bool = True
    message: str = ""


class Model(Result):
    """A managed model as ``GET /api/models/{id}`` shows it (seed 002's fields and more)."""

    id: str
    name: str
    display_name: str | None = None
    description: str | None = None
    framework: str | None = None
    engine: str | None = None
    model: str | None = None
    status: str = "unknown"
    health: str | None = None
    priority: int | None = None
    created_at: str | None = None
    updated_at: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    resource_requirements: dict[str, Any] = Field(default_factory=dict)
    resource_usage: dict[str, Any] = Field(default_factory=dict)
    performance_stats: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    auto_start: bool = False
    source: str | None = None
    failure_reason: str | None = None


class ModelPage(Result):
    """One page of ``GET /api/models``."""

    items: list[Model]
    total: int
    page: int
    size: int
    pages: int = 0


class Task(Result):
    """A background start, stop or restart; ``state`` is pending, running, succeeded or
    failed and ``message`` says why."""

    id: str
    kind: str | None = None
    model: str | None = None
    state: str
    message: str = ""
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def done(self) -> bool:
        return self.state in TASK_DONE

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"


class ModelInfo(Result):
    """``GET /api/models/{alias}/info``: the fleet's live view of one model (seed 003)."""

    model_name: str
    status: str
    engine: str | None = None
    aliases: list[str] = Field(default_factory=list)
    pid: int | None = None
    idle_time_sec: float | None = None
    mode: str | None = None
    supports: list[str] = Field(default_factory=list)
    is_available: bool = True
    failure_reason: str | None = None
    pending_requests: int = 0
    start_count: int = 0
    auto_start: bool = False
    endpoint: str | None = None
    instances: list[dict[str, Any]] = Field(default_factory=list)
    last_log: str | None = None


class FleetInfo(Result):
    """``GET /api/models/all-models/info``."""

    models: dict[str, ModelInfo]
    total_models: int = 0
    running_models: int = 0
    total_pending_requests: int = 0


class LogLine(Result):
    """One engine log line; the timestamp arrives as ISO-8601 or epoch seconds."""

    timestamp: datetime
    message: str
    level: str | None = None


class LogEvent(Result):
    """One event of ``/logs/stream``: ``type`` is historical, historical_complete,
    realtime, stream_end or error; ``log`` is set for the first and third."""

    type: str
    log: LogLine | None = None
    message: str | None = None

    @property
    def final(self) -> bool:
        """True for the last event of a stream."""
        return self.type in ("stream_end", "error")


class AlertThresholds(Result):
    gpu_utilization_high: float | None = None
    gpu_temperature_high: float | None = None
    response_time_high: float | None = None
    error_rate_high: float | None = None


class Config(Result):
    """``GET /api/config``: the gateway's run-time settings (seed 002)."""

    gpu_monitor_interval: float | None = None
    max_concurrent_models: int | None = None
    default_model_timeout: float | None = None
    health_check_interval: float | None = None
    log_level: str | None = None
    alert_thresholds: AlertThresholds = Field(default_factory=AlertThresholds)


class Usage(Result):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class TextChoice(Result):
    text: str = ""
    index: int = 0
    finish_reason: str | None = None


class _Completion(Result):
    id: str
    model: str | None = None
    usage: Usage | None = None
    created: int | None = None


class Generation(_Completion):
    """``POST /api/models/{id}/generate``: seed 002's completion."""

    choices: list[TextChoice]

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""


class GenerationChunk(Result):
    """One event of a streamed generation."""

    id: str | None = None
    choices: list[TextChoice] = Field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c.text for c in self.choices)


class ChatMessage(Result):
    role: str
    content: str | None = None


class ChatChoice(Result):
    index: int = 0
    message: ChatMessage
    finish_reason: str | None = None


class ChatCompletion(_Completion):
    """``POST /api/models/{id}/chat/completions``: an OpenAI chat completion."""

    choices: list[ChatChoice]

    @property
    def content(self) -> str:
        return (self.choices[0].message.content or "") if self.choices else ""


class ChatDelta(Result):
    index: int = 0
    delta: dict[str, Any] = Field(default_factory=dict)
    finish_reason: str | None = None


class ChatCompletionChunk(Result):
    id: str | None = None
    model: str | None = None
    choices: list[ChatDelta] = Field(default_factory=list)

    @property
    def content(self) -> str:
        return "".join(str(c.delta.get("content") or "") for c in self.choices)


class Embedding(Result):
    embedding: list[float]
    index: int = 0


class Embeddings(Result):
    data: list[Embedding]
    model: str | None = None
    usage: Usage | None = None

    @property
    def vectors(self) -> list[list[float]]:
        return [e.embedding for e in sorted(self.data, key=lambda e: e.index)]


class Health(Result):
    """``GET /health``."""

    status: str
    version: str | None = None
    models: dict[str, str] = Field(default_factory=dict)
    running_models: int = 0


def validated(model: type[M], body: Any) -> M:
    """``model`` of ``body``; an answer of the wrong shape is a MalformedResponseError."""
    try:
        return model.model_validate(body)
    except PydanticValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        raise MalformedResponseError(f"unexpected {model.__name__}: {where}: {first['msg']}",
                                     body=body) from None
