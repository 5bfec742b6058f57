"""Staged rollouts: rollouts, their devices and their timeline (issue 10).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Frozen once released, like 0001-0003 (types spelt out, not imported).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID, NAME, VERSION = sa.String(64), sa.String(128), sa.String(64)


def _row_id() -> sa.Column:
    return sa.Column("id", ROW_ID, autoincrement=True, nullable=False)


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Double(), nullable=nullable)


def _fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"],
                                   name=f"fk_{table}_rollout_id_rollouts", ondelete="CASCADE")


def _rollouts() -> None:
    op.create_table(
        "rollouts", _row_id(),
        sa.Column("model_name", NAME, nullable=False),
        sa.Column("model_version", VERSION, nullable=False),
        sa.Column("fleet", ID), sa.Column("target", JSON, nullable=False),
        sa.Column("policy", JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("wave", sa.Integer(), server_default="0", nullable=False),
        _time("phase_started_at"), _time("created_at"), _time("updated_at"),
        sa.Column("verdict", JSON),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"))
    op.create_index("ix_rollouts_state", "rollouts", ["state"])


def _rollout_devices() -> None:
    op.create_table(
        "rollout_devices", _row_id(),
        sa.Column("rollout_id", ROW_ID, nullable=False),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("cmd_id", sa.String(64), nullable=False),
        sa.Column("old_version", VERSION),
        sa.Column("state", sa.String(24), nullable=False),
        _time("sent_at", nullable=True), _time("deadline", nullable=True),
        sa.Column("result", JSON), _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_rollout_devices"),
        sa.UniqueConstraint("cmd_id", name="uq_rollout_devices_cmd_id"),
        sa.UniqueConstraint("rollout_id", "device_id",
                            name="uq_rollout_devices_rollout_id_device_id"),
        _fk("rollout_devices"))


def _rollout_events() -> None:
    op.create_table(
        "rollout_events", _row_id(),
        sa.Column("rollout_id", ROW_ID, nullable=False), _time("at"),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.String(512), nullable=False),
        sa.Column("figures", JSON),
        sa.PrimaryKeyConstraint("id", name="pk_rollout_events"), _fk("rollout_events"))
    op.create_index("ix_rollout_events_rollout_id_at", "rollout_events", ["rollout_id", "at"])


def upgrade() -> None:
    _rollouts()
    _rollout_devices()
    _rollout_events()


def downgrade() -> None:
    for table in ("rollout_events", "rollout_devices", "rollouts"):
        op.drop_table(table)
