"""Per-model request and token counters, fed by the relay after each request."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from modelfleet.errors import FleetError


@dataclass
class ModelUsage:
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    aborted: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)


class UsageBook:
    def __init__(self) -> None:
        self.models: dict[str, ModelUsage] = {}

    def of(self, model: str) -> ModelUsage:
        usage = self.models.get(model)
        if usage is None:
            usage = self.models[model] = ModelUsage()
        return usage

    def record(
        self, model: str, status: int, usage: dict | None, error: FleetError | None
    ) -> None:
        book = self.of(model)
        book.requests += 1
        if status == 499:
            book.aborted += 1
        elif error is not None or status >= 400:
            book.failed += 1
            book.errors[error.code if error is not None else f"HTTP_{status}"] += 1
        else:
            book.succeeded += 1
        if usage:
            book.prompt_tokens += _int(usage.get("prompt_tokens"))
            book.completion_tokens += _int(usage.get("completion_tokens"))
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
            book.cached_tokens += _int(cached if cached is not None else usage.get("cache_n"))


def _int(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0
