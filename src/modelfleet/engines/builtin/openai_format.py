"""The response objects of the OpenAI API, shaped as OpenAI and vLLM send them.

Pure functions of plain values: no model, no I/O. Choices carry vLLM's ``stop_reason``
(the stop string or token id that ended them) next to ``finish_reason``; clients that
do not know it ignore it.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import torch


def new_id(prefix: str) -> str:
    """A response id such as ``chatcmpl-<32 hex>``."""
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int = 0) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def generation_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """``usage`` of a generation, with llama.cpp's prompt-cache names: this engine keeps no
    cache between requests, so every prompt token is processed (``prompt_n``)."""
    return {**usage(prompt_tokens, completion_tokens), "cache_n": 0, "prompt_n": prompt_tokens,
            "prompt_tokens_details": {"cached_tokens": 0}}


@dataclass
class ChoiceState:
    """One choice as it accumulates: text pieces, then how it ended."""

    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass(frozen=True)
class Envelope:
    """What every object of one response shares: id, creation time, model, kind."""

    id: str
    model: str
    chat: bool
    include_usage: bool = False
    created: int = field(default_factory=lambda: int(time.time()))

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def chunk(
        self,
        index: int,
        *,
        text: str | None = None,
        role: bool = False,
        finish_reason: str | None = None,
        stop_reason: str | int | None = None,
    ) -> dict[str, Any]:
        """A streaming chunk for choice ``index``: its first (``role``), a text piece, or
        its last (``finish_reason``; empty delta)."""
        if self.chat:
            delta: dict[str, Any] = {}
            if role:
                delta = {"role": "assistant", "content": ""}
            elif text is not None:
                delta = {"content": text}
            choice: dict[str, Any] = {"index": index, "delta": delta}
        else:
            choice = {"index": index, "text": text or ""}
        choice.update(logprobs=None, finish_reason=finish_reason)
        if finish_reason is not None:
            choice["stop_reason"] = stop_reason
        out = self._head("chat.completion.chunk" if self.chat else "text_completion")
        out["choices"] = [choice]
        if self.include_usage:
            # OpenAI: with include_usage every chunk has usage null but the last.
            out["usage"] = None
        return out

    def usage_chunk(self, counts: dict[str, int]) -> dict[str, Any]:
        """The extra last chunk of ``stream_options.include_usage``: no choices."""
        out = self._head("chat.completion.chunk" if self.chat else "text_completion")
        out.update(choices=[], usage=counts)
        return out

    def response(self, choices: list[ChoiceState], counts: dict[str, int]) -> dict[str, Any]:
        """The non-streaming response."""
        items = []
        for index, state in enumerate(choices):
            item: dict[str, Any] = {"index": index}
            if self.chat:
                item["message"] = {"role": "assistant", "content": state.text, "tool_calls": []}
            else:
                item["text"] = state.text
            item.update(
                logprobs=None, finish_reason=state.finish_reason, stop_reason=state.stop_reason
            )
            items.append(item)
        out = self._head("chat.completion" if self.chat else "text_completion")
        out.update(choices=items, usage=counts, system_fingerprint=None)
        return out


def models_list(name: str, root: str, max_model_len: int, created: int) -> dict[str, Any]:
    """``GET /v1/models``: the one served model."""
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "modelfleet",
                "root": root,
                "parent": None,
                "max_model_len": max_model_len,
            }
        ],
    }


def embedding_list(
    response_id: str, model: str, vectors: torch.Tensor, encoding_format: str, prompt_tokens: int
) -> dict[str, Any]:
    """``POST /v1/embeddings``; base64 is little-endian float32, as OpenAI sends it."""
    data = []
    array = vectors.float().cpu().numpy().astype("<f4")
    for index, row in enumerate(array):
        embedding: Any = (
            base64.b64encode(row.tobytes()).decode("ascii")
            if encoding_format == "base64"
            else row.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "id": response_id,
        "object": "list",
        "created": int(time.time()),
        "model": model,
        "data": data,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def rerank_result(
    response_id: str,
    model: str,
    documents: list[str],
    scores: list[float],
    top_n: int | None,
    return_documents: bool,
    prompt_tokens: int,
) -> dict[str, Any]:
    """``POST /v1/rerank`` (Jina/Cohere shape), best first."""
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    results = []
    for i in order[:top_n] if top_n else order:
        item: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
        if return_documents:
            item["document"] = {"text": documents[i]}
        results.append(item)
    return {
        "id": response_id,
        "object": "rerank",
        "model": model,
        "results": results,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def score_list(
    response_id: str, model: str, scores: list[float], prompt_tokens: int
) -> dict[str, Any]:
    """``POST /v1/score`` (vLLM shape)."""
    return {
        "id": response_id,
        "object": "list",
        "created": int(time.time()),
        "model": model,
        "data": [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)],
        "usage": usage(prompt_tokens),
    }
