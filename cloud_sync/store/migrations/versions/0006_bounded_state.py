"""Bounded state: an index for drift-score retention (issue 17, item 4).

Retention deletes ``drift_scores`` by ``window_end`` across every fleet; the existing
(fleet, window_end) index cannot serve that range, so each batch would scan the table.
Per-device message caps use the existing (device_id, kind, ts) index; the other
retention rules use indexes from 0001-0004.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Frozen once released, like 0001-0004 (types spelt out, not imported).
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_drift_scores_window_end", "drift_scores", ["window_end"])


def downgrade() -> None:
    op.drop_index("ix_drift_scores_window_end", table_name="drift_scores")
