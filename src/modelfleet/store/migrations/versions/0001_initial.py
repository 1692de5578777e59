"""The initial schema: models, users, api_keys, alert_rules, alert_events, settings_kv,
request_log, metric_rollups, tasks.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written by hand for SQLite and PostgreSQL both. Types are spelled out here rather than
imported from ``tables.py``, so that later edits there cannot change what this revision
did; a unit test checks that the two still agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id() -> sa.Column[object]:
    return sa.Column("id", sa.String(64), nullable=False)


def _one_of(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f'"{column}" IN ({listed})', name=f"ck_{table}_{column}")


def upgrade() -> None:
    op.create_table(
        "models",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("resource_requirements", JSON, nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("auto_start", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("deleted_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        _one_of("models", "source", ("config", "api")),
    )
    # A name is unique among live models; deleted ones keep theirs for history.
    op.create_index(
        "uq_models_name_live",
        "models",
        ["name"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )

    op.create_table(
        "users",
        _id(),
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        _ts("created_at"),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        _one_of("users", "role", ("admin", "user")),
    )

    op.create_table(
        "api_keys",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=True),
        sa.Column("allowed_models", JSON, nullable=True),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        _ts("expires_at", nullable=True),
        _ts("created_at"),
        _ts("last_used_at", nullable=True),
        _ts("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("secret_hash", name="uq_api_keys_secret_hash"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_api_keys_owner_id_users", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_api_keys_owner_id", "api_keys", ["owner_id"])

    op.create_table(
        "alert_rules",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("op", sa.String(2), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_s", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        _one_of("alert_rules", "op", (">", ">=", "<", "<=", "==", "!=")),
        _one_of("alert_rules", "severity", ("info", "warning", "error", "critical")),
    )

    op.create_table(
        "alert_events",
        _id(),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        _ts("at"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
        sa.ForeignKeyConstraint(
            ["rule_id"], ["alert_rules.id"], name="fk_alert_events_rule_id_alert_rules",
            ondelete="CASCADE",
        ),
        _one_of("alert_events", "state", ("firing", "resolved")),
    )
    op.create_index("ix_alert_events_rule_id", "alert_events", ["rule_id"])
    op.create_index("ix_alert_events_at", "alert_events", ["at"])

    op.create_table(
        "settings_kv",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", JSON, nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("key", name="pk_settings_kv"),
    )

    op.create_table(
        "request_log",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        _ts("at"),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("instance", sa.String(200), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("queue_ms", sa.Float(), nullable=True),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("e2e_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_request_log"),
    )
    op.create_index("ix_request_log_model_at", "request_log", ["model", "at"])
    op.create_index("ix_request_log_at", "request_log", ["at"])

    op.create_table(
        "metric_rollups",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        _ts("at"),
        sa.Column("interval", sa.String(4), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metric_rollups"),
        sa.UniqueConstraint(
            "scope", "interval", "subject", "name", "at",
            name="uq_metric_rollups_scope_interval_subject_name_at",
        ),
        _one_of("metric_rollups", "interval", ("1m", "5m", "1h", "1d")),
        _one_of("metric_rollups", "scope", ("system", "gpu", "model")),
    )

    op.create_table(
        "tasks",
        _id(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        _one_of("tasks", "state", ("pending", "running", "succeeded", "failed")),
    )
    op.create_index("ix_tasks_model", "tasks", ["model"])


def downgrade() -> None:
    for index, table in (
        ("ix_tasks_model", "tasks"),
        ("ix_request_log_at", "request_log"),
        ("ix_request_log_model_at", "request_log"),
        ("ix_alert_events_at", "alert_events"),
        ("ix_alert_events_rule_id", "alert_events"),
        ("ix_api_keys_owner_id", "api_keys"),
        ("uq_models_name_live", "models"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "tasks", "metric_rollups", "request_log", "settings_kv", "alert_events",
        "alert_rules", "api_keys", "users", "models",
    ):
        op.drop_table(table)
