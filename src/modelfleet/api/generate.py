"""``POST /v1/generate``: seed 004's TGI-style generation, served as a chat completion.

Not the hot path, so it is a FastAPI route with pydantic models (documented
in /openapi.json). Its validation errors are 400 (seed 004's clients expect
400 for a bad request), not FastAPI's 422: the route class translates them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from modelfleet.api.core import CoreDep
from modelfleet.engines.base import CHAT
from modelfleet.errors import FleetError, InvalidJSONError, InvalidRequestError
from modelfleet.gateway.proxy import principal_of
from modelfleet.gateway.scenarios import render_prompt
from modelfleet.protocol.generate import (
    ERROR_CODES_DOC,
    GenerateRequest,
    GenerateResponse,
    chat_payload,
    generate_response,
    tgi_error,
)

_ERROR_DOC: dict[int | str, dict[str, Any]] = {
    400: {"description": "MODEL_NOT_FOUND, PROMPT_FORMAT_FAILED or INVALID_PARAMETER"},
    500: {"description": "UPSTREAM_SERVER_ERROR (seed 004: TGI_SERVER_ERROR)"},
    503: {"description": "DOWNSTREAM_REQUEST_FAILED (or QUEUE_FULL, MODEL_START_FAILED)"},
    504: {"description": "INFERENCE_TIMEOUT"},
}


class BadRequestRoute(APIRoute):
    """An APIRoute whose request validation errors are 400 INVALID_PARAMETER (or INVALID_JSON)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise as_bad_request(exc) from None

        return handle


def as_bad_request(exc: RequestValidationError) -> InvalidRequestError:
    """The first validation problem as a 400 naming its field."""
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return InvalidJSONError(f"request body is not valid JSON: {first.get('msg')}")
    param = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    if not param:
        return InvalidRequestError("request body must be a JSON object with model_id and inputs")
    return InvalidRequestError(f"{param}: {first.get('msg')}", param=param)


router = APIRouter(tags=["generate"], route_class=BadRequestRoute)


@router.post("/v1/generate", response_model=GenerateResponse, responses=_ERROR_DOC,
             summary="Generate text (TGI-style, seed 004)",
             description="Renders `inputs` with the `scenario` template, sends it through "
             "the model's chat template and returns the generated text.\n\n" + ERROR_CODES_DOC)
async def generate(req: GenerateRequest, request: Request, core: CoreDep) -> GenerateResponse:
    """Resolve the model, render the scenario, one chat completion, reshape; 004's errors."""
    try:
        model = core.fleet.resolve(req.model_id, CHAT)
        prompt = render_prompt(req.inputs, req.scenario)
        answer = await core.proxy.call_json(
            model, "/v1/chat/completions", chat_payload(req, prompt, model.cfg.limits),
            principal_of(request.scope))
        return generate_response(answer, model.name)
    except FleetError as exc:
        raise tgi_error(exc) from None
