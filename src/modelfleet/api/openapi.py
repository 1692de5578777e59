"""OpenAPI for the raw-ASGI inference routes, from the same protocol models.

FastAPI documents the routes it serves; the inference routes bypass it for
speed, so their path items are added here to the generated schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from modelfleet.protocol import openai as p

_REF = "#/components/schemas/{model}"

# path → (request model, response model, summary, streams)
DOCUMENTED: dict[str, tuple[type[BaseModel], type[BaseModel], str, bool]] = {
    "/v1/chat/completions": (p.ChatCompletionRequest, p.ChatCompletionResponse,
                             "Chat completion (SSE when stream is true)", True),
    "/v1/completions": (p.CompletionRequest, p.CompletionResponse,
                        "Text completion (SSE when stream is true)", True),
    "/v1/embeddings": (p.EmbeddingRequest, p.EmbeddingResponse, "Embeddings", False),
    "/v1/rerank": (p.RerankRequest, p.RerankResponse, "Rerank documents (Jina/Cohere)", False),
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {"type": "object", "properties": {
            "message": {"type": "string"}, "type": {"type": "string"},
            "code": {"type": "string"}, "param": {"type": ["string", "null"]},
            "details": {"type": ["object", "null"]}}},
        "timestamp": {"type": "string"},
        "path": {"type": "string"},
    },
}


# Every error an operation may answer, in the one shape of ``errors.py``.
ERROR_STATUSES = {
    "400": "Invalid request", "401": "Authentication required or failed",
    "403": "Not allowed for this caller", "404": "Not found", "409": "Conflict",
    "413": "Body too large", "422": "Validation failed", "429": "Rate limited",
    "431": "Headers too large", "502": "Engine error", "503": "Unavailable (model not ready, "
    "queue full, no room)", "504": "Timed out",
}


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the inference routes, every operation's errors and
    the bearer scheme."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = plain()
        add_inference_paths(schema)
        add_errors_and_security(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def add_inference_paths(schema: dict[str, Any]) -> None:
    pairs = [(m, mode) for req, resp, _, _ in DOCUMENTED.values()
             for m, mode in ((req, "validation"), (resp, "serialization"))]
    _, defs = models_json_schema(pairs, ref_template=_REF)  # type: ignore[arg-type]
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(defs.get("$defs", {}))
    components["ErrorResponse"] = ERROR_SCHEMA
    for path, (req, resp, summary, streams) in DOCUMENTED.items():
        ok: dict[str, Any] = {"application/json": {"schema": {"$ref": _REF.format(
            model=resp.__name__)}}}
        if streams:
            ok["text/event-stream"] = {"schema": {"type": "string"}}
        error = {"content": {"application/json": {"schema": {
            "$ref": _REF.format(model="ErrorResponse")}}}}
        schema.setdefault("paths", {})[path] = {"post": {
            "tags": ["OpenAI"],
            "summary": summary,
            "operationId": "create_" + path.strip("/").replace("/", "_"),
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": _REF.format(model=req.__name__)}}}},
            "responses": {
                "200": {"description": "OK", "content": ok},
                "400": {"description": "Invalid request", **error},
                "404": {"description": "Unknown model", **error},
                "503": {"description": "Model unavailable", **error},
                "504": {"description": "Inference timed out", **error},
            },
        }}


def add_errors_and_security(schema: dict[str, Any]) -> None:
    """Document the error answers every operation can give (FastAPI's own 422 schema is
    replaced: our validation errors have the common shape) and the bearer scheme."""
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["ErrorResponse"] = ERROR_SCHEMA
    components["securitySchemes"] = {"bearer": {
        "type": "http", "scheme": "bearer",
        "description": "A JWT from POST /api/auth/token, or an API key (mf-...)"}}
    schema["security"] = [{"bearer": []}, {}]  # {}: while auth is off
    error = {"content": {"application/json": {"schema": {
        "$ref": _REF.format(model="ErrorResponse")}}}}
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERROR_STATUSES.items():
                if status == "422" or status not in responses:
                    responses[status] = {"description": description, **error}
    components["schemas"].pop("HTTPValidationError", None)
    components["schemas"].pop("ValidationError", None)
