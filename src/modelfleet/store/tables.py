"""The store's tables, as typed SQLAlchemy declarative models.

The schema itself is created by the Alembic revisions in ``migrations/``; these
classes describe it for queries, and a unit test checks that the two agree on
SQLite and PostgreSQL. Rules that hold for every table:

- timestamps are ``UTCDateTime``: stored as UTC, always read back timezone-aware;
- JSON columns are JSONB on PostgreSQL (so a tag filter can use ``@>``), JSON elsewhere;
- ids are short prefixed strings (``model-1a2b…``) except the two append-only logs,
  which use integer autoincrement keys;
- enum-like columns are strings with a CHECK constraint, never database enums, so a
  new value is a one-line migration on both backends.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from modelfleet.settings import ModelConfig
from modelfleet.store import convert
from modelfleet.store.convert import iso_z

# Deterministic constraint names, identical on both backends (Alembic needs names to
# drop or alter a constraint later).
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite only autoincrements an ``INTEGER PRIMARY KEY``; BIGINT would not.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """``<prefix>-<12 hex>``: short enough to type, random enough never to collide here."""
    return f"{prefix}-{secrets.token_hex(6)}"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is UTC in the database and timezone-aware in Python.

    SQLite has no time zones: values are stored as naive UTC and given ``UTC`` back on
    reading. A naive value handed in is taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id_column(prefix: str) -> Mapped[str]:
    return mapped_column(String(64), primary_key=True, default=partial(new_id, prefix))


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    # Quoted: ``interval`` is a reserved word on PostgreSQL.
    return CheckConstraint(f'"{column}" IN ({listed})', name=name)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


SOURCES = ("config", "api")
ROLES = ("admin", "user")
OPS = (">", ">=", "<", "<=", "==", "!=")
SEVERITIES = ("info", "warning", "error", "critical")
ALERT_STATES = ("firing", "resolved")
INTERVALS = ("1m", "5m", "1h", "1d")
SCOPES = ("system", "gpu", "model")
TASK_STATES = ("pending", "running", "succeeded", "failed")


class ModelRow(Base):
    """A model the fleet knows. ``config`` holds the rest of its ModelConfig (aliases,
    limits, profiles, args…) plus any engine keys the API was given; soft-deleted rows
    (``deleted_at`` set) stay for history and free their name for a new model."""

    __tablename__ = "models"
    __table_args__ = (
        Index(
            "uq_models_name_live",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        _one_of("source", SOURCES, "source"),
    )

    id: Mapped[str] = _id_column("model")
    name: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    engine: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    resource_requirements: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    auto_start: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(16), default="api")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def to_model_config(self) -> ModelConfig:
        """The ModelConfig this row describes (ConfigError if it no longer validates)."""
        return convert.model_config_of_row(self)

    def to_api(self, live: dict[str, Any] | None = None) -> dict[str, Any]:
        """Seed 002's model object; ``live`` adds status, health and usage figures."""
        return convert.model_api_of(self, live)


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (_one_of("role", ROLES, "role"),)

    id: Mapped[str] = _id_column("user")
    username: Mapped[str] = mapped_column(String(100), unique=True)
    # An argon2 (or other) hash made by the auth layer; the store never sees passwords.
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "role": self.role,
                "disabled": self.disabled, "created_at": iso_z(self.created_at)}


class ApiKeyRow(Base):
    """A bearer key. Only the SHA-256 of its secret is kept; ``prefix`` identifies it."""

    __tablename__ = "api_keys"

    id: Mapped[str] = _id_column("key")
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # user: inference and reads; admin: management too (a key for automation).
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")
    owner_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # None: every model; a list: only these names.
    allowed_models: Mapped[list[str] | None] = mapped_column(JSONType)
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def to_api(self) -> dict[str, Any]:
        """The listing view: never the secret, never its hash."""
        return {"id": self.id, "name": self.name, "prefix": self.prefix, "role": self.role,
                "owner_id": self.owner_id, "allowed_models": self.allowed_models,
                "rpm": self.rpm, "tpm": self.tpm, "expires_at": iso_z(self.expires_at),
                "created_at": iso_z(self.created_at), "last_used_at": iso_z(self.last_used_at),
                "revoked_at": iso_z(self.revoked_at)}


class AlertRuleRow(Base):
    """An alert rule: ``condition`` as written, and its parsed parts beside it.

    ``channels`` holds the normalised notification channels (``{"type": "log"}``,
    ``{"type": "webhook", "url", "headers"}``…). Built-in rules (``builtin``) are rows
    too, so that their events have a rule to belong to; their threshold follows
    ``alert_thresholds`` and is rewritten by the alert engine. ``window_s`` is no longer
    read (a condition's ``for`` replaced it); it stays because dropping a column on
    SQLite rebuilds the table, and dropping ``alert_rules`` would cascade to its events.
    """

    __tablename__ = "alert_rules"
    __table_args__ = (_one_of("op", OPS, "op"), _one_of("severity", SEVERITIES, "severity"))

    id: Mapped[str] = _id_column("rule")
    name: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(100))
    op: Mapped[str] = mapped_column(String(2))
    threshold: Mapped[float] = mapped_column(Float)
    window_s: Mapped[int] = mapped_column(Integer, default=60)
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    condition: Mapped[str] = mapped_column(Text, default="", server_default="")
    model: Mapped[str | None] = mapped_column(String(200))
    for_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    channels: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONType, default=list, server_default=text("'[]'"))
    builtin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    def to_api(self) -> dict[str, Any]:
        scope = f'{{model="{self.model}"}}' if self.model is not None else ""
        return {"id": self.id, "name": self.name,
                "condition": self.condition
                or f"{self.metric}{scope} {self.op} {self.threshold:g}",
                "metric": self.metric, "model": self.model, "op": self.op,
                "threshold": self.threshold, "for_s": self.for_s, "severity": self.severity,
                "enabled": self.enabled, "channels": self.channels, "builtin": self.builtin,
                "created_at": iso_z(self.created_at)}


class AlertEventRow(Base):
    """A rule's alert began (``firing``) or ended (``resolved``) for one scope (``model``,
    None for the host). Both events of one alert carry the firing event's id as
    ``alert_id``."""

    __tablename__ = "alert_events"
    __table_args__ = (_one_of("state", ALERT_STATES, "state"),)

    id: Mapped[str] = _id_column("alert")
    rule_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("alert_rules.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    model: Mapped[str | None] = mapped_column(String(200))
    alert_id: Mapped[str | None] = mapped_column(String(64))

    def to_api(self) -> dict[str, Any]:
        return {"alert_id": self.alert_id or self.id, "id": self.id, "rule_id": self.rule_id,
                "state": self.state, "value": self.value, "model": self.model,
                "message": self.message, "timestamp": iso_z(self.at)}


class SettingRow(Base):
    """One key of the runtime configuration that ``PUT /api/config`` changes."""

    __tablename__ = "settings_kv"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RequestLogRow(Base):
    """One finished request. No foreign keys: the log outlives keys and models."""

    __tablename__ = "request_log"
    __table_args__ = (Index("ix_request_log_model_at", "model", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    model: Mapped[str] = mapped_column(String(200))
    instance: Mapped[str | None] = mapped_column(String(200))
    key_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    queue_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    e2e_ms: Mapped[float | None] = mapped_column(Float)


class MetricRollupRow(Base):
    """One aggregated value of one metric over one time bucket."""

    __tablename__ = "metric_rollups"
    __table_args__ = (
        # Column order serves the query (scope, interval, subject, names, time range).
        UniqueConstraint("scope", "interval", "subject", "name", "at"),
        _one_of("interval", INTERVALS, "interval"),
        _one_of("scope", SCOPES, "scope"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    interval: Mapped[str] = mapped_column(String(4))
    scope: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(200), default="")
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)


class TaskRow(Base):
    """A background operation (start, stop, restart) that an API call handed back an id for."""

    __tablename__ = "tasks"
    __table_args__ = (_one_of("state", TASK_STATES, "state"),)

    id: Mapped[str] = _id_column("task")
    kind: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200), index=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_api(self) -> dict[str, Any]:
        return {"task_id": self.id, "id": self.id, "kind": self.kind, "model": self.model,
                "state": self.state, "message": self.message,
                "created_at": iso_z(self.created_at), "updated_at": iso_z(self.updated_at)}
