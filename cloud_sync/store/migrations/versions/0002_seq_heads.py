"""seq_heads: the highest seq stored per (device, kind), so ingest finds gaps with one
keyed read per batch instead of scanning ``messages``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Frozen once released, like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seq_heads",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("head", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "kind", name="pk_seq_heads"))


def downgrade() -> None:
    op.drop_table("seq_heads")
