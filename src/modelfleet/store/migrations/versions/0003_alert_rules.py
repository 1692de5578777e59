"""Alert rules keep their condition as written, a model scope, a ``for`` duration, their
notification channels and whether they are built in; alert events keep their scope and
the id of the alert they belong to.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Columns are only added (``ALTER TABLE … ADD COLUMN`` on both backends): rebuilding
``alert_rules`` on SQLite would drop it, and that cascades to its events.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("alert_rules", recreate="never") as batch:
        batch.add_column(sa.Column("condition", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("model", sa.String(200), nullable=True))
        batch.add_column(sa.Column("for_s", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("channels", JSON, nullable=False,
                                   server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("builtin", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("alert_events", recreate="never") as batch:
        batch.add_column(sa.Column("model", sa.String(200), nullable=True))
        batch.add_column(sa.Column("alert_id", sa.String(64), nullable=True))
    # Rules made before this revision had only ``metric op threshold``, always logged.
    rules = sa.table("alert_rules", sa.column("channels", JSON))
    op.execute(rules.update().values(channels=[{"type": "log"}]))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN (SQLite 3.35 or later), again without a rebuild.
    for column in ("alert_id", "model"):
        op.drop_column("alert_events", column)
    op.execute("DELETE FROM alert_rules WHERE builtin")
    for column in ("builtin", "channels", "for_s", "model", "condition"):
        op.drop_column("alert_rules", column)
