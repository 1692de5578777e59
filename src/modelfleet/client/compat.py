"""Seed 002's Python SDK, ``LLMInferenceClient``, as a drop-in on :class:`Client`.

Seed 002 documents ``from llm_inference_client import LLMInferenceClient`` with
``LLMInferenceClient(base_url=..., api_token=...)`` and the methods ``list_models``,
``create_model``, ``get_model``, ``update_model``, ``delete_model``, ``start_model``,
``stop_model``, ``generate``, ``chat`` and ``embeddings``; changing the import to
``from modelfleet.client import LLMInferenceClient`` is all its code needs.
"""

from __future__ import annotations

from modelfleet.client.surface import DEFAULT_TIMEOUT
from modelfleet.client.sync import Client


class LLMInferenceClient(Client):
    """A :class:`Client` built with seed 002's constructor arguments."""

    def __init__(self, base_url: str, api_token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT):
        super().__init__(base_url, token=api_token, timeout=timeout)
