"""The Python SDK of modelfleet: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

    from modelfleet.client import Client

    with Client("http://127.0.0.1:8000", token="...") as fleet:
        fleet.create_model("qwen", framework="vllm", model="/models/qwen")
        fleet.wait_task(fleet.start_model("qwen").id)
        print(fleet.generate("qwen", "Hello", max_tokens=20).text)

Both clients have the same methods (see :class:`~modelfleet.client.surface.Surface`),
return the typed results of :mod:`~modelfleet.client.types` and raise the exceptions
of :mod:`~modelfleet.client.errors`. ``LLMInferenceClient`` is seed 002's SDK.
"""

from modelfleet.client.aio import AsyncClient
from modelfleet.client.compat import LLMInferenceClient
from modelfleet.client.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GatewayTimeout,
    GatewayUnreachable,
    MalformedResponseError,
    ModelfleetError,
    NotFoundError,
    OperationTimeout,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnavailableError,
    ValidationError,
)
from modelfleet.client.surface import DEFAULT_URL
from modelfleet.client.sync import Client
from modelfleet.client.types import (
    Ack,
    ChatCompletion,
    ChatCompletionChunk,
    Config,
    Embeddings,
    FleetInfo,
    Generation,
    GenerationChunk,
    Health,
    LogEvent,
    LogLine,
    Model,
    ModelInfo,
    ModelPage,
    Task,
)

__all__ = [
    "DEFAULT_URL",
    "Ack",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "ChatCompletion",
    "ChatCompletionChunk",
    "Client",
    "Config",
    "ConflictError",
    "Embeddings",
    "FleetInfo",
    "GatewayTimeout",
    "GatewayUnreachable",
    "Generation",
    "GenerationChunk",
    "Health",
    "LLMInferenceClient",
    "LogEvent",
    "LogLine",
    "MalformedResponseError",
    "Model",
    "ModelInfo",
    "ModelPage",
    "ModelfleetError",
    "NotFoundError",
    "OperationTimeout",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "Task",
    "UnavailableError",
    "ValidationError",
]
