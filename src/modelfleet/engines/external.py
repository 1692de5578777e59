"""Any OpenAI-compatible server we do not launch: another vLLM, Ollama, a provider.

``model`` is its base URL (``http://host:8000/v1`` or ``http://host:8000``);
``api_key`` is sent as a bearer token; ``upstream_model`` is the model name
that server expects (the client's name or alias is rewritten to it). Health is
``GET {base}/v1/models``. It is counted and limited like any other model.

With ``endpoints`` (instances started by hand, each with its role: seed 000's
address lists) those are the instances, probed the same way, and ``model`` is only
the weights' name (``fleet/endpoints.py``).
"""

from __future__ import annotations

from modelfleet.engines.base import CHAT, COMPLETION, EMBEDDING, RERANK, EngineAdapter
from modelfleet.settings import ModelConfig


class ExternalAdapter(EngineAdapter):
    name = "external"
    launched = False
    health_path = "/v1/models"

    def base_url(self, cfg: ModelConfig, host: str = "", port: int = 0) -> str:
        return root_url(cfg.model)

    # Instances listed in ``endpoints`` are engines started by hand for seed 000's roles
    # (vLLM and its kin): profiling and aborts are passed on, and their answer tells.
    def can_profile(self, cfg: ModelConfig) -> bool:
        return bool(cfg.endpoints)

    def abort_path(self, cfg: ModelConfig) -> str | None:
        return "/abort_requests" if cfg.endpoints else None

    def capabilities(self, cfg: ModelConfig) -> set[str]:
        if cfg.task == "embed":
            return {EMBEDDING}
        if cfg.task == "rerank":
            return {RERANK}
        return {CHAT, COMPLETION, EMBEDDING, RERANK} if cfg.task == "auto" else {CHAT, COMPLETION}


def root_url(url: str) -> str:
    """``http://h:1/v1/`` → ``http://h:1``: request paths already start with /v1."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url
