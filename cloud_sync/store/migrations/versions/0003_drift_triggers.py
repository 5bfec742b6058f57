"""Drift scores, retraining triggers and their action outbox (issue 9).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Frozen once released, like 0001 and 0002 (types spelt out, not imported).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID, NAME, VERSION = sa.String(64), sa.String(128), sa.String(64)


def _row_id() -> sa.Column:
    return sa.Column("id", ROW_ID, autoincrement=True, nullable=False)


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Double(), nullable=nullable)


def _uq(table: str, *cols: str) -> sa.UniqueConstraint:
    return sa.UniqueConstraint(*cols, name=f"uq_{table}_{'_'.join(cols)}")


def _drift_scores() -> None:
    op.create_table(
        "drift_scores", _row_id(),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("scope_key", sa.String(96), nullable=False),
        sa.Column("fleet", ID, nullable=False), sa.Column("device_id", ID),
        sa.Column("model_name", NAME, nullable=False),
        sa.Column("model_version", VERSION, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        _time("window_start"), _time("window_end"),
        sa.Column("inferences", sa.Integer(), nullable=False),
        *(sa.Column(n, sa.Float()) for n in ("score", "critical_value", "floor", "threshold")),
        *(sa.Column(n, sa.Integer()) for n in ("n_eff", "m_eff", "n_raw", "m_raw")),
        sa.Column("verdict", sa.String(24), nullable=False),
        sa.Column("details", JSON, nullable=False), _time("computed_at"),
        sa.PrimaryKeyConstraint("id", name="pk_drift_scores"),
        sa.UniqueConstraint("scope_key", "model_name", "model_version", "kind", "window_start",
                            name="uq_drift_scores_window"))
    op.create_index("ix_drift_scores_fleet_window_end", "drift_scores", ["fleet", "window_end"])


def _triggers() -> None:
    op.create_table(
        "triggers", _row_id(),
        sa.Column("fleet", ID, nullable=False), sa.Column("model_name", NAME, nullable=False),
        sa.Column("model_version", VERSION, nullable=False),
        sa.Column("dedupe_key", sa.String(256), nullable=False),
        _time("fired_at"), _time("window_end"),
        sa.Column("policy", JSON, nullable=False), sa.Column("evidence", JSON, nullable=False),
        sa.Column("samples_export", sa.String(1024)),
        sa.Column("samples_count", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_triggers"), _uq("triggers", "dedupe_key"))
    op.create_index("ix_triggers_fired_at", "triggers", ["fired_at"])


def _actions() -> None:
    op.create_table(
        "actions", _row_id(),
        sa.Column("trigger_id", ROW_ID, nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        _time("next_attempt_at"), _time("claimed_at", nullable=True),
        sa.Column("last_error", sa.String(512)), _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_actions"), _uq("actions", "trigger_id", "idx"),
        sa.ForeignKeyConstraint(["trigger_id"], ["triggers.id"],
                                name="fk_actions_trigger_id_triggers", ondelete="CASCADE"),
        sa.CheckConstraint("state IN ('pending', 'running', 'done', 'failed')",
                           name="ck_actions_state"))
    op.create_index("ix_actions_state_next_attempt_at", "actions", ["state", "next_attempt_at"])
    op.create_table(
        "action_attempts", _row_id(),
        sa.Column("action_id", ROW_ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        _time("started_at"), _time("finished_at"),
        sa.Column("ok", sa.Boolean(), nullable=False), sa.Column("error", sa.String(512)),
        sa.PrimaryKeyConstraint("id", name="pk_action_attempts"),
        _uq("action_attempts", "action_id", "attempt"),
        sa.ForeignKeyConstraint(["action_id"], ["actions.id"],
                                name="fk_action_attempts_action_id_actions", ondelete="CASCADE"))


def upgrade() -> None:
    _drift_scores()
    _triggers()
    _actions()


def downgrade() -> None:
    for table in ("action_attempts", "actions", "triggers", "drift_scores"):
        op.drop_table(table)
