"""Per-device drift windows kept by ingest (issue 21): ``telemetry_windows`` holds each
device's telemetry summed per window of its fleet's trigger policy (counts and
histograms), so the drift step reads one row per device window instead of every
payload; ``fleet_windows`` sums a fleet's windows, one part per ingest worker (no two
workers write one row), so the pooled fleet is a few rows; ``telemetry_windows.version``
counts a row's updates and ``scored_version`` the one the drift step scored last, so it
scores each device window once, again only when it changed; ``window_coverage`` says
since when ingest has kept a fleet's windows of one size (the drift step reads older
windows from ``messages``). The sample sizes of ``drift_scores`` become BIGINT: a pooled
fleet of 50,000 devices counts more than 2**31 input values in a window.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

Frozen once released, like 0001-0010 (types spelt out, not imported).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID, NAME, VERSION = sa.String(64), sa.String(128), sa.String(64)
WINDOW_KEY = ("device_id", "model_name", "model_version", "window_s", "window_start")


SCORE_SIZES = ("inferences", "n_eff", "m_eff", "n_raw", "m_raw")  # drift_scores, to BIGINT


def upgrade() -> None:
    with op.batch_alter_table("drift_scores") as batch:  # a fleet's sizes pass 2**31
        for name in SCORE_SIZES:
            batch.alter_column(name, type_=sa.BigInteger(), existing_type=sa.Integer(),
                               existing_nullable=name != "inferences")
    op.create_table(
        "telemetry_windows",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("device_id", ID, nullable=False), sa.Column("fleet", ID, nullable=False),
        sa.Column("model_name", NAME, nullable=False),
        sa.Column("model_version", VERSION, nullable=False),
        sa.Column("window_s", sa.Float(), nullable=False),
        sa.Column("window_start", sa.Double(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("inferences", sa.BigInteger(), nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("scored_version", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_telemetry_windows"),
        sa.UniqueConstraint(*WINDOW_KEY, name="uq_telemetry_windows_key"))
    op.create_index("ix_telemetry_windows_window_start", "telemetry_windows", ["window_start"])
    op.create_table(
        "fleet_windows",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("fleet", ID, nullable=False), sa.Column("part", sa.String(128), nullable=False),
        sa.Column("model_name", NAME, nullable=False),
        sa.Column("model_version", VERSION, nullable=False),
        sa.Column("window_s", sa.Float(), nullable=False),
        sa.Column("window_start", sa.Double(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("inferences", sa.BigInteger(), nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fleet_windows"),
        sa.UniqueConstraint("fleet", "part", "model_name", "model_version", "window_s",
                            "window_start", name="uq_fleet_windows_key"))
    op.create_index("ix_fleet_windows_window_start", "fleet_windows", ["window_start"])
    op.create_table(
        "window_coverage",
        sa.Column("fleet", ID, nullable=False), sa.Column("window_s", sa.Float(), nullable=False),
        sa.Column("since", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("fleet", "window_s", name="pk_window_coverage"))


def downgrade() -> None:
    with op.batch_alter_table("drift_scores") as batch:
        for name in SCORE_SIZES:
            batch.alter_column(name, type_=sa.Integer(), existing_type=sa.BigInteger(),
                               existing_nullable=name != "inferences")
    op.drop_table("window_coverage")
    op.drop_index("ix_fleet_windows_window_start", table_name="fleet_windows")
    op.drop_table("fleet_windows")
    op.drop_index("ix_telemetry_windows_window_start", table_name="telemetry_windows")
    op.drop_table("telemetry_windows")
