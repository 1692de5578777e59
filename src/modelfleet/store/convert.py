"""Conversions between a stored model row, the YAML ``ModelConfig`` and the API's shapes.

A model row keeps five ModelConfig fields as columns (``name``, ``engine``, ``model``,
``auto_start``, ``resource_requirements``) and everything else of it in ``config``.
The manager API (seed 002) sends free-form engine settings in ``config``
(``{"model_path": …, "n_ctx": 2048}``); keys that ModelConfig does not know are engine
flags and become ``args`` when the row is turned back into a ModelConfig.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from modelfleet.errors import ConfigError, InvalidRequestError
from modelfleet.settings import ModelConfig, RequestDefaults, ResourceRequirements

if TYPE_CHECKING:
    from modelfleet.store.tables import ModelRow

# Seed 002 writes engines the way their projects spell themselves.
ENGINE_ALIASES = {
    "llama.cpp": "llamacpp",
    "llama-cpp": "llamacpp",
    "llama_cpp": "llamacpp",
    "text-generation-inference": "tgi",
    "sim": "simulator",
}
COLUMN_FIELDS = ("name", "engine", "model", "auto_start", "resource_requirements")
CONFIG_FIELDS = frozenset(ModelConfig.model_fields) - set(COLUMN_FIELDS)
# Where seed 002's clients put the weights; they become the ``model`` column.
MODEL_PATH_KEYS = ("model", "model_path", "model_name")
SAMPLING_KEYS = frozenset(RequestDefaults.model_fields)
# Top-level API fields that are row metadata, not part of ModelConfig.
META_FIELDS = ("display_name", "description", "priority", "tags")


def iso_z(value: datetime | None) -> str | None:
    """``2024-01-01T12:00:00Z`` (UTC, seconds), as seed 002 writes times."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalise_engine(value: str) -> str:
    lowered = value.strip().lower()
    return ENGINE_ALIASES.get(lowered, lowered)


def columns_of_config(cfg: ModelConfig) -> dict[str, Any]:
    """The row columns that hold ``cfg``: the five column fields, the rest in ``config``."""
    return {
        "name": cfg.name,
        "engine": cfg.engine,
        "model": cfg.model,
        "auto_start": cfg.auto_start,
        "resource_requirements": cfg.resource_requirements.model_dump(
            mode="json", exclude_none=True
        ),
        "config": cfg.model_dump(mode="json", exclude=set(COLUMN_FIELDS)),
    }


def columns_of_api(data: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Row columns from an API body in seed 002's names (or ModelConfig's).

    ``framework`` and ``engine`` are the same field; ModelConfig fields given at the top
    level (``aliases``, ``limits``…) join ``config``; the weights may come as ``model``
    or as ``config.model_path``/``model_name``. An unknown top-level field is an
    InvalidRequestError. With ``partial`` (an update) nothing is required or defaulted.
    """
    out: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("framework", "engine", "name", "model", "auto_start",
                   "resource_requirements", *META_FIELDS) and value is None:
            continue  # an absent field, as pydantic models without exclude_none send it
        if key in ("framework", "engine"):
            out["engine"] = normalise_engine(str(value))
        elif key in ("name", "model", "auto_start", "resource_requirements", *META_FIELDS):
            out[key] = value
        elif key == "config":
            if value is not None and not isinstance(value, Mapping):
                raise InvalidRequestError("config must be an object", param="config")
            config.update(value or {})
        elif key in CONFIG_FIELDS:
            config[key] = value
        else:
            raise InvalidRequestError(f"unknown model field {key!r}", param=key)
    if config or "config" in data:
        out["config"] = config
    if not out.get("model"):
        found = next((config[k] for k in MODEL_PATH_KEYS if config.get(k)), None)
        if found is not None:
            out["model"] = str(found)
    _check_meta(out)
    if partial:
        return out
    for required in ("name", "model"):
        if not out.get(required):
            raise InvalidRequestError(f"{required} is required", param=required)
    out.setdefault("engine", "builtin")
    out.setdefault("config", {})
    out.setdefault("display_name", out["name"])
    return out


def _check_meta(out: Mapping[str, Any]) -> None:
    """Types of the fields ModelConfig does not validate (it validates the rest)."""
    checks: dict[str, tuple[type, ...]] = {
        "display_name": (str,), "description": (str,), "priority": (int,), "tags": (list,),
    }
    for key, types in checks.items():
        value = out.get(key)
        if key in out and (not isinstance(value, types) or isinstance(value, bool)):
            raise InvalidRequestError(f"{key} has the wrong type", param=key)
    if any(not isinstance(t, str) for t in out.get("tags") or []):
        raise InvalidRequestError("tags must be strings", param="tags")
    if not isinstance(out.get("resource_requirements", {}), Mapping):
        raise InvalidRequestError("resource_requirements must be an object",
                                  param="resource_requirements")


def model_config_of(columns: Mapping[str, Any]) -> ModelConfig:
    """Build the ModelConfig of a row's columns; raises pydantic's ValidationError.

    Sampling keys of ``config`` (``temperature``, ``top_p``…) become the model's request
    ``defaults``; other unknown keys (engine settings from the API) are merged under
    ``args``. An explicit ``config.defaults`` or ``config.args`` wins over them.
    """
    config = dict(columns.get("config") or {})
    known = {k: v for k, v in config.items() if k in CONFIG_FIELDS}
    sampling = {k: v for k, v in config.items() if k in SAMPLING_KEYS}
    if sampling:  # seed 002 keeps request defaults in config beside engine settings
        given = known.get("defaults")
        known["defaults"] = {**sampling, **(given if isinstance(given, Mapping) else {})}
    extra = {k: v for k, v in config.items()
             if k not in CONFIG_FIELDS and k not in MODEL_PATH_KEYS and k not in SAMPLING_KEYS}
    if extra:
        args = known.get("args")
        known["args"] = {**extra, **(args if isinstance(args, Mapping) else {})}
    return ModelConfig(
        name=columns["name"],
        engine=columns["engine"],
        model=columns["model"],
        auto_start=bool(columns.get("auto_start", False)),
        resource_requirements=columns.get("resource_requirements") or {},
        **known,
    )


def validate_columns(columns: Mapping[str, Any]) -> ModelConfig:
    """model_config_of for input from a caller: problems are an InvalidRequestError."""
    try:
        return model_config_of(columns)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        first = errors[0] if errors else {"field": None, "message": "invalid"}
        raise InvalidRequestError(
            f"invalid model: {first['field']}: {first['message']}",
            param=first["field"],
            details={"errors": errors},
        ) from None


def _row_columns(row: ModelRow) -> dict[str, Any]:
    return {k: getattr(row, k) for k in (*COLUMN_FIELDS, "config")}


def model_config_of_row(row: ModelRow) -> ModelConfig:
    """A stored row as ModelConfig; a row that no longer validates is a ConfigError."""
    columns = _row_columns(row)
    config = dict(columns.get("config") or {})
    if "priority" not in config:  # API-made models keep it in its column (seed 002's field)
        columns["config"] = {**config, "priority": row.priority or 0}
    try:
        return model_config_of(columns)
    except ValidationError as exc:
        raise ConfigError(f"stored model {row.name!r} is not a valid model: {exc}") from None


def model_api_of(row: ModelRow, live: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Seed 002's model object (plus ``engine``, ``model``, ``aliases``, ``source``).

    ``live`` (the fleet's view: status, health, resource_usage…) fills the live fields;
    it cannot overwrite what the row says about identity or configuration.
    """
    live = dict(live or {})
    config = dict(row.config or {})
    if config.get("api_key"):
        config["api_key"] = "***"  # an upstream secret; never echoed
    out: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "display_name": row.display_name or row.name,
        "description": row.description,
        "framework": row.engine,
        "engine": row.engine,
        "model": row.model,
        "status": live.pop("status", "stopped"),
        "health": live.pop("health", "unknown"),
        "priority": row.priority,
        "created_at": iso_z(row.created_at),
        "updated_at": iso_z(row.updated_at),
        "config": config,
        "resource_requirements": _requirements(row.resource_requirements),
        "tags": list(row.tags or []),
        "aliases": list(config.get("aliases") or []),
        "auto_start": row.auto_start,
        "source": row.source,
    }
    for key, value in live.items():
        out.setdefault(key, value)
    return out


def _requirements(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every field, null where unset (placement then estimates from the weights)."""
    try:
        return ResourceRequirements.model_validate(stored or {}).model_dump()
    except ValidationError:  # written by an older version: shown as it is
        return dict(stored or {})
