"""The alert rules there are: stored ones and the four built from ``alert_thresholds``.

- ``Rule``: one rule as the engine evaluates it (condition parsed, channels checked);
- ``builtin_rules(thresholds)``: seed 002's thresholds as rules, read at every call so
  that ``PUT /api/config`` takes effect at the next evaluation;
- ``stored_fields`` / ``updated_fields``: an API body as the store's rule fields;
- ``rule_api``: a rule as ``/api/config/alerts`` shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelfleet.errors import ConflictError, InvalidRequestError
from modelfleet.observability.alert_rules import Condition, parse_condition
from modelfleet.observability.notify import (
    Channel,
    channel_warnings,
    parse_channels,
    redact_channels,
)
from modelfleet.settings import AlertThresholds
from modelfleet.store.convert import iso_z
from modelfleet.store.tables import SEVERITIES, AlertRuleRow

BUILTIN_PREFIX = "builtin-"
# (the alert_thresholds key, the metric it limits); every one is "metric > threshold".
BUILTINS = (
    ("gpu_utilization_high", "gpu_utilization"),
    ("gpu_temperature_high", "gpu_temperature"),
    ("response_time_high", "latency_p95"),
    ("error_rate_high", "error_rate"),
)
_LOG_ONLY: tuple[Channel, ...] = ({"type": "log"},)


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    condition: Condition
    text: str  # the condition as written
    severity: str = "warning"
    enabled: bool = True
    channels: tuple[Channel, ...] = _LOG_ONLY
    builtin: bool = False
    created_at: datetime | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def setting(self) -> str | None:
        """The ``alert_thresholds`` key a built-in rule follows."""
        return self.id.removeprefix(BUILTIN_PREFIX) if self.builtin else None

    @classmethod
    def of_row(cls, row: AlertRuleRow) -> Rule:
        cond = Condition(row.metric, row.model, row.op, row.threshold, row.for_s)
        channels = tuple(row.channels or _LOG_ONLY)
        return cls(id=row.id, name=row.name, condition=cond, text=row.condition or cond.text(),
                   severity=row.severity, enabled=row.enabled, channels=channels,
                   builtin=row.builtin, created_at=row.created_at,
                   warnings=tuple(channel_warnings(channels)))

    def summary(self) -> dict[str, Any]:
        """What a webhook receiver is told about the rule (no channel secrets)."""
        return {"id": self.id, "name": self.name, "condition": self.text,
                "severity": self.severity, "builtin": self.builtin}


def builtin_rules(thresholds: AlertThresholds) -> list[Rule]:
    rules = []
    for key, metric in BUILTINS:
        cond = Condition(metric, None, ">", float(getattr(thresholds, key)))
        rules.append(Rule(id=BUILTIN_PREFIX + key, name=key, condition=cond, text=cond.text(),
                          builtin=True))
    return rules


def is_builtin(rule_id: str) -> bool:
    return rule_id.startswith(BUILTIN_PREFIX)


def read_only(rule_id: str) -> ConflictError:
    key = rule_id.removeprefix(BUILTIN_PREFIX)
    return ConflictError(
        f"alert rule {rule_id!r} is built in: it follows alert_thresholds.{key}; change "
        f'that with PUT /api/config {{"alert_thresholds": {{"{key}": …}}}}',
        code="ALERT_RULE_BUILTIN", details={"setting": f"alert_thresholds.{key}"})


def _condition_fields(text: str) -> dict[str, Any]:
    cond = parse_condition(text)
    return {"condition": text.strip(), "metric": cond.metric, "model": cond.model,
            "op": cond.op, "threshold": cond.threshold, "for_s": cond.for_s}


def _check_severity(severity: object) -> None:
    if severity not in SEVERITIES:
        err = InvalidRequestError(f"severity must be one of {', '.join(SEVERITIES)}",
                                  param="severity")
        err.status = 422
        raise err


def stored_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A ``POST /config/alerts`` body (already typed) as ``AlertsRepo.create_rule``'s
    arguments; 422 naming the field for a bad condition, severity or channel."""
    fields = _condition_fields(spec["condition"])
    severity = spec.get("severity", "warning")
    _check_severity(severity)
    channels, _ = parse_channels(spec.get("notification_channels", ["log"]),
                                 spec.get("webhook_url"))
    return {"name": spec["name"], **fields, "severity": severity,
            "enabled": spec.get("enabled", True), "channels": channels}


def updated_fields(row: AlertRuleRow, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A ``PUT`` body (any subset of the POST fields) as ``update_rule``'s fields."""
    fields: dict[str, Any] = {k: spec[k] for k in ("name", "enabled") if k in spec}
    if "condition" in spec:
        fields.update(_condition_fields(spec["condition"]))
    if "severity" in spec:
        _check_severity(spec["severity"])
        fields["severity"] = spec["severity"]
    if "notification_channels" in spec:
        fields["channels"], _ = parse_channels(spec["notification_channels"],
                                               spec.get("webhook_url"))
    elif spec.get("webhook_url") is not None:  # a new URL for the webhook it has
        kept = [c for c in row.channels or [] if c.get("type") != "webhook"]
        fields["channels"], _ = parse_channels(kept, spec["webhook_url"])
    return fields


def rule_api(rule: Rule, status: Mapping[str, Any], *, reveal: bool) -> dict[str, Any]:
    """Seed 002's rule fields (``name, condition, severity, enabled,
    notification_channels``) and ours: the parsed condition, the channels in full
    (``reveal``: webhook URLs and header values, for admins), warnings and live status."""
    cond = rule.condition
    channels = list(rule.channels) if reveal else redact_channels(rule.channels)
    body: dict[str, Any] = {
        "id": rule.id, "name": rule.name, "condition": rule.text, "severity": rule.severity,
        "enabled": rule.enabled,
        "notification_channels": [c["type"] for c in rule.channels],
        "channels": channels, "warnings": list(rule.warnings),
        "metric": cond.metric, "model": cond.model, "op": cond.op,
        "threshold": cond.threshold, "for_s": cond.for_s,
        "builtin": rule.builtin, "created_at": iso_z(rule.created_at),
        "status": dict(status),
    }
    if rule.builtin:
        body["setting"] = f"alert_thresholds.{rule.setting}"
    return body

