"""Task figures of telemetry and samples (issue 19, protocol 1.3).

A detector's telemetry carries a ``detection`` block; its headline figures get columns
of ``messages`` so the dashboard's charts and the rollout health read them without
parsing every payload: ``frames`` (images post-processed), ``empty_frames`` (frames
with no detection), ``detections`` (boxes found) and ``score_mean`` (their mean
score). A sample's ``detections`` (boxes in its input's pixels) stay in its payload;
``samples.detections`` counts them (NULL for a classifier's or generic model's sample).
Older rows keep NULL: they are classifier messages.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Frozen once released, like 0001-0007 (types spelt out, not imported).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

MESSAGE_COLUMNS = (("frames", sa.Integer()), ("empty_frames", sa.Integer()),
                   ("detections", sa.Integer()), ("score_mean", sa.Float()))


def upgrade() -> None:
    for name, kind in MESSAGE_COLUMNS:
        op.add_column("messages", sa.Column(name, kind, nullable=True))
    op.add_column("samples", sa.Column("detections", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("samples") as batch:
        batch.drop_column("detections")
    with op.batch_alter_table("messages") as batch:
        for name, _kind in reversed(MESSAGE_COLUMNS):
            batch.drop_column(name)
