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


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the inference routes."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = plain()
        add_inference_paths(schema)
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
