"""Indexes for the leader's reads that scanned a growing table (issue 21, found by
``tests/cloud_sync/test_leader_indexes.py``): the drift step's window of the fleet's
telemetry (``messages.ts``) and retention's age rule on sequence heads
(``seq_heads.updated_at``). On PostgreSQL the messages index is made on the partitioned
table, so every day partition gets its own.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Frozen once released, like 0001-0009 (names spelt out, not imported).
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEXES = (("ix_messages_ts", "messages", ["ts"]),
           ("ix_seq_heads_updated_at", "seq_heads", ["updated_at"]))


def upgrade() -> None:
    for name, table, cols in INDEXES:
        op.create_index(name, table, cols)


def downgrade() -> None:
    for name, table, _cols in reversed(INDEXES):
        op.drop_index(name, table_name=table)
