"""Device incarnations: dedupe and gap accounting per outbox incarnation (issue 17, item 2).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Frozen once released, like 0001-0004 (types spelt out, not imported).
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
