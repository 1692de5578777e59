"""Wire models of the alert rules API (seed 002's ``POST /api/config/alerts``).

- :class:`AlertRuleCreate`: ``{name, condition, severity, enabled,
  notification_channels}`` as seed 002 has it, plus ``webhook_url`` (not in the seed)
  for a ``"webhook"`` channel given by name;
- :class:`AlertRuleUpdate`: ``PUT /api/config/alerts/{rule_id}``, any subset of them.

Unknown fields are refused (422 naming the field): a misspelt ``severty`` must not be
silently dropped from an alert rule. The condition's grammar and the channels are
checked by ``observability.alert_rules`` and ``observability.notify``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Channels = list[str | dict[str, Any]]


def _log_only() -> Channels:
    return ["log"]


class AlertRuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    condition: str | None = None
    severity: str | None = None
    enabled: bool | None = None
    notification_channels: Channels | None = None
    webhook_url: str | None = None  # not in seed 002

    def fields(self) -> dict[str, Any]:
        """The fields that were sent (a field sent as null counts as not sent)."""
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None}


class AlertRuleCreate(AlertRuleUpdate):
    name: str = Field(min_length=1, max_length=200)
    condition: str
    severity: str = "warning"
    enabled: bool = True
    notification_channels: Channels = Field(default_factory=_log_only)
