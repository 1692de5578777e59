"""Wire models of the generate APIs, and their translation to the OpenAI protocol.

Two seeds describe a "generate" call:

- seed 004, ``POST /v1/generate`` (TGI-style): ``{model_id, inputs, scenario,
  parameters}`` → ``{generated_text, model, tokens}``. It is served as a chat
  completion (so the model's chat template applies); :func:`chat_payload`
  builds that request and :func:`generate_response` reshapes the answer.
  Its errors carry 004's ``error_code``; :func:`tgi_error` maps ours onto them.
- seed 002, ``POST /api/models/{model_id}/generate``: an OpenAI completions
  body (``prompt, max_tokens, temperature, top_p, top_k, stop, stream``) whose
  model comes from the path; the engine's answer is already 002's shape.

Per-model limits (``limits.max_tokens``, ``limits.default_temperature``) are
applied by the proxy, as on every route.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelfleet.errors import (
    FleetError,
    InferenceTimeoutError,
    InvalidRequestError,
    ModelNotFoundError,
    UnavailableError,
    UpstreamError,
)
from modelfleet.protocol.openai import MAX_STOP, CompletionRequest
from modelfleet.settings import Limits

DEFAULT_MAX_NEW_TOKENS = 128
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.9

# Seed 004's error codes (its table), as this gateway names them.
MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
UPSTREAM_SERVER_ERROR = "UPSTREAM_SERVER_ERROR"
TGI_SERVER_ERROR = "TGI_SERVER_ERROR"  # 004's own name for UPSTREAM_SERVER_ERROR

ERROR_CODES_DOC = """Errors carry `error_code` (and `error.code`):

| status | error_code | when |
|---|---|---|
| 400 | `MODEL_NOT_FOUND` | `model_id` is neither a model nor an alias |
| 400 | `PROMPT_FORMAT_FAILED` | unknown `scenario`, empty `inputs`, or a template that fails |
| 400 | `INVALID_PARAMETER` | a field has the wrong type or range (`error.param` names it) |
| 504 | `INFERENCE_TIMEOUT` | the engine did not answer in time (scaled by `max_new_tokens`) |
| 503 | `DOWNSTREAM_REQUEST_FAILED` | the engine cannot be reached |
| 500 | `UPSTREAM_SERVER_ERROR` | the engine answered 5xx or broke the connection \
(seed 004 calls this `TGI_SERVER_ERROR`) |

Other 503 codes of the gateway may also appear: `QUEUE_FULL`, `MODEL_START_FAILED`."""


class GenerateParameters(BaseModel):
    """Sampling parameters of ``/v1/generate``; unknown ones reach the engine as-is."""

    model_config = ConfigDict(extra="allow", strict=True)

    max_new_tokens: int | None = Field(
        None, ge=1, description=f"Tokens to generate; default {DEFAULT_MAX_NEW_TOKENS} "
        "(or the model's max_tokens limit when that is lower).")
    temperature: float | None = Field(
        None, ge=0, le=2, description=f"Sampling temperature; default {DEFAULT_TEMPERATURE} "
        "(or the model's default_temperature).")
    top_p: float = Field(DEFAULT_TOP_P, gt=0, le=1, description="Nucleus sampling.")
    do_sample: bool = Field(True, description="false: greedy decoding (temperature 0).")
    stop: list[str] = Field(default_factory=list, max_length=MAX_STOP,
                            description="Strings that end generation.")


class GenerateRequest(BaseModel):
    """The body of ``POST /v1/generate`` (seed 004)."""

    model_config = ConfigDict(strict=True)

    model_id: str = Field(min_length=1, max_length=512, description="Model id or alias.",
                          examples=["qwen2"])
    inputs: str = Field(description="The input text (prompt).")
    scenario: str | None = Field(
        None, description="Prompt template: base (default), qa, summarize, rewrite.",
        examples=["qa"])
    parameters: GenerateParameters = Field(default_factory=GenerateParameters)


class GenerateResponse(BaseModel):
    """The answer of ``POST /v1/generate`` (seed 004)."""

    generated_text: str = Field(description="The generated text, without the prompt.")
    model: str = Field(description="The name of the model that answered.")
    tokens: int = Field(description="Generated tokens (the engine's completion_tokens).")


class ModelGenerateRequest(CompletionRequest):
    """The body of ``POST /api/models/{model_id}/generate`` (seed 002).

    An OpenAI completions body; ``model`` is ignored (the path names it).
    """

    top_k: int | None = Field(None, ge=-1, description="(not in OpenAI) top-k sampling")


def chat_payload(req: GenerateRequest, prompt: str, limits: Limits) -> dict[str, Any]:
    """The chat-completions body (without ``model``) that serves ``req`` with ``prompt``.

    Defaults: max_new_tokens 128 capped by the model's limit; temperature the
    request's, else the model's default_temperature, else 0.7; do_sample
    false means greedy (temperature 0). An explicit max_new_tokens above the
    model's limit is a 400 (INVALID_PARAMETER), as on every other route.
    """
    p = req.parameters
    max_tokens = p.max_new_tokens
    if max_tokens is None:
        max_tokens = min(DEFAULT_MAX_NEW_TOKENS, limits.max_tokens or DEFAULT_MAX_NEW_TOKENS)
    if not p.do_sample:
        temperature = 0.0
    elif p.temperature is not None:
        temperature = p.temperature
    elif limits.default_temperature is not None:
        temperature = limits.default_temperature
    else:
        temperature = DEFAULT_TEMPERATURE
    payload: dict[str, Any] = {
        **(p.model_extra or {}),
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": p.top_p,
        "stream": False,
    }
    if p.stop:
        payload["stop"] = p.stop
    return payload


def generate_response(answer: dict[str, Any], model: str) -> GenerateResponse:
    """Seed 004's answer from an engine's chat completion; UpstreamError if it has no text."""
    choices = answer.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):
        raise UpstreamError("the engine's answer has no choices[0].message")
    text = message.get("content") or ""
    if not isinstance(text, str):
        raise UpstreamError("the engine's answer content is not text")
    usage = answer.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if not isinstance(tokens, int):
        tokens = len(text.split())  # an estimate, as 004 allows, when the engine gives none
    return GenerateResponse(generated_text=text, model=model, tokens=tokens)


def tgi_error(exc: FleetError) -> FleetError:
    """``exc`` as seed 004's table has it (the renderer adds ``error_code``).

    Unknown model → 400 MODEL_NOT_FOUND; timeouts → 504 INFERENCE_TIMEOUT;
    gateway-side unavailability (unreachable engine, full queue, failed
    start) stays 503 with its code; any other 5xx (the engine answered 5xx,
    broke the connection or sent garbage) → 500 UPSTREAM_SERVER_ERROR with
    the engine's status and code in ``details``. Client errors pass as they are.
    """
    if isinstance(exc, ModelNotFoundError):
        return InvalidRequestError(exc.message, code=MODEL_NOT_FOUND, param="model_id",
                                   details=exc.details)
    if isinstance(exc, InferenceTimeoutError | UnavailableError) or exc.status < 500:
        return exc
    if exc.code == "INFERENCE_TIMEOUT":  # the engine's own 504
        return InferenceTimeoutError(exc.message)
    return FleetError(exc.message, code=UPSTREAM_SERVER_ERROR, details={
        "upstream_status": exc.status, "upstream_code": exc.code, "alias": TGI_SERVER_ERROR})
