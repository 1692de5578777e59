"""Wire models of the model-management API (seed 002's fields, seed 003's actions).

- :class:`ModelCreate`: ``POST /api/models``. Seed 002's body (``name, display_name,
  description, framework, priority, config, resource_requirements, tags``); ModelConfig
  fields (``engine``, ``model``, ``aliases``, ``auto_start``, ``limits``…) may also be
  given at the top level and are validated by the store.
- :class:`ModelUpdate`: ``PUT /api/models/{id}``: the same fields, all optional.
- :class:`LifecycleRequest`: the optional body of ``start|stop|restart``:
  ``{force, timeout}``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20

# Seed 002's status words for the list filter, as the fleet's states.
STATUS_ALIASES: dict[str, tuple[str, ...]] = {
    "running": ("ready",),
    "stopped": ("stopped",),
    "error": ("failed",),
    "ready": ("ready",),
    "starting": ("starting",),
    "stopping": ("stopping",),
    "failed": ("failed",),
}


def fleet_states(status: str) -> tuple[str, ...] | None:
    """The fleet states a ``status`` filter word means; None for an unknown word."""
    return STATUS_ALIASES.get(status.strip().lower())


class _ModelFields(BaseModel):
    # Extra top-level keys are ModelConfig fields (aliases, limits, args…); the store
    # knows them and rejects the rest with the field named.
    model_config = ConfigDict(extra="allow")

    display_name: str | None = Field(None, max_length=200)
    description: str | None = None
    framework: str | None = Field(None, min_length=1, max_length=32)
    engine: str | None = Field(None, min_length=1, max_length=32)
    model: str | None = Field(None, min_length=1)
    priority: int | None = None
    config: dict[str, Any] | None = None
    resource_requirements: dict[str, Any] | None = None
    tags: list[str] | None = None
    auto_start: bool | None = None

    def store_fields(self) -> dict[str, Any]:
        """What the store's ``create``/``update`` take: only the fields that were sent."""
        return self.model_dump(exclude_unset=True)


class ModelCreate(_ModelFields):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^/\s]+$")


class ModelUpdate(_ModelFields):
    # Present so that a rename is refused by the route with a clear message.
    name: str | None = Field(None, min_length=1, max_length=200)


class LifecycleRequest(BaseModel):
    """``{force, timeout}``: ``force`` stops with a short grace; ``timeout`` (seconds)
    bounds how long the task waits before it is marked failed."""

    model_config = ConfigDict(extra="forbid")

    force: bool = False
    timeout: float | None = Field(None, gt=0, le=3600)
