"""The runtime configuration of ``/api/config`` (seed 002's fields).

Six knobs, each a view of a Settings field: ``gpu_monitor_interval``,
``max_concurrent_models``, ``default_model_timeout`` (``timeouts.start``),
``health_check_interval``, ``log_level`` and ``alert_thresholds``. A change
is validated as a whole (a partial body is merged into the current values
first, ``alert_thresholds`` key by key), written to the store, and applied at
once: the placement and the health loop read the settings on every decision,
the start timeout is pushed to the models, the log level to ``logging``.

At start the stored values are restored, except where the config file, the
environment or a flag sets the field: what an operator wrote there wins.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_serializer, field_validator

from modelfleet.errors import InvalidRequestError
from modelfleet.fleet.registry import Fleet
from modelfleet.settings import (
    AlertThresholds,
    HealthInterval,
    LogLevel,
    MaxModels,
    MonitorInterval,
    Settings,
    StartTimeout,
)
from modelfleet.store import Store

log = logging.getLogger("modelfleet.config")

KEY_PREFIX = "config."


class SystemConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpu_monitor_interval: MonitorInterval
    max_concurrent_models: MaxModels
    default_model_timeout: StartTimeout
    health_check_interval: HealthInterval
    log_level: LogLevel
    alert_thresholds: AlertThresholds

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_serializer("log_level")
    def _upper(self, value: str) -> str:
        return value.upper()


def current(settings: Settings) -> SystemConfig:
    return SystemConfig(
        gpu_monitor_interval=settings.gpu_monitor_interval,
        max_concurrent_models=settings.max_concurrent_models,
        default_model_timeout=settings.timeouts.start,
        health_check_interval=settings.health_check_interval,
        log_level=settings.log_level,
        alert_thresholds=settings.alert_thresholds,
    )


def merged(base: SystemConfig, change: dict[str, Any]) -> SystemConfig:
    """``base`` with ``change`` laid over it; 422 naming the first bad field."""
    if not isinstance(change, dict):
        raise _invalid("the body must be a JSON object", None)
    values = base.model_dump()
    for key, value in change.items():
        if key == "alert_thresholds" and isinstance(value, dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    try:
        return SystemConfig.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        raise _invalid(f"{field}: {first['msg']}", field) from None


def _invalid(message: str, field: str | None) -> InvalidRequestError:
    err = InvalidRequestError(message, param=field)
    err.status = 422
    return err


def apply(settings: Settings, fleet: Fleet, cfg: SystemConfig) -> None:
    settings.gpu_monitor_interval = cfg.gpu_monitor_interval
    settings.max_concurrent_models = cfg.max_concurrent_models
    settings.health_check_interval = cfg.health_check_interval
    settings.alert_thresholds = cfg.alert_thresholds
    fleet.set_start_timeout(cfg.default_model_timeout)
    if cfg.log_level != settings.log_level:
        logging.getLogger().setLevel(cfg.log_level.upper())
        settings.log_level = cfg.log_level


async def save(store: Store, cfg: SystemConfig) -> None:
    await store.settings.put_many(
        {KEY_PREFIX + k: v for k, v in cfg.model_dump(mode="json").items()})


def _explicit(settings: Settings) -> set[str]:
    """Fields the file, the environment or a flag set (they win over stored values)."""
    fields = {f for f in SystemConfig.model_fields if f in settings.model_fields_set
              and f != "alert_thresholds"}  # per key, in restore()
    if "start" in settings.timeouts.model_fields_set:
        fields.add("default_model_timeout")
    return fields


async def restore(settings: Settings, store: Store, fleet: Fleet) -> SystemConfig:
    """Apply what was stored (see the module docstring) and store the result."""
    stored = {key[len(KEY_PREFIX):]: value for key, value in (await store.settings.all()).items()
              if key.startswith(KEY_PREFIX)}
    explicit = _explicit(settings)
    base = current(settings)
    change = {k: v for k, v in stored.items() if k in SystemConfig.model_fields
              and k not in explicit}
    if "alert_thresholds" in change and "alert_thresholds" in settings.model_fields_set:
        file_keys = settings.alert_thresholds.model_fields_set
        change["alert_thresholds"] = {k: v for k, v in dict(change["alert_thresholds"]).items()
                                      if k not in file_keys}
    try:
        cfg = merged(base, change)
    except InvalidRequestError as exc:
        log.warning("stored runtime config ignored: %s", exc.message)
        cfg = base
    apply(settings, fleet, cfg)
    await save(store, cfg)
    return cfg
