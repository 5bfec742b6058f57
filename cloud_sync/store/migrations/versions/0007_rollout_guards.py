"""Rollout guards and fleet-size indexes (issue 17, items 5 and 8).

- ``rollout_devices.released_at`` and the unique partial index
  ``uq_rollout_devices_open_device`` on ``device_id WHERE released_at IS NULL``: a device
  is held by at most one open rollout, enforced by the database, so two rollouts created
  at once over the same device cannot both commit (see ``cloud_sync.rollouts.store``).
  Rows of finished rollouts are released here; where rollouts already overlap (possible
  before this revision) the oldest open one keeps the device and the newer ones' rows are
  released, so the index can be built on any existing database.
- ``ix_devices_state_last_seen``: the silence rule (``serve/jobs.py``, every few seconds)
  reads live devices by ``state`` and ``last_seen`` instead of scanning every device.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Frozen once released, like 0001-0004 (types spelt out, not imported).
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OPEN = sa.text("released_at IS NULL")


def _release_finished_and_overlapping() -> None:
    op.execute(sa.text(
        "UPDATE rollout_devices SET released_at = (SELECT r.updated_at FROM rollouts r "
        "WHERE r.id = rollout_devices.rollout_id) WHERE rollout_id IN "
        "(SELECT id FROM rollouts WHERE state IN ('done', 'rolled_back'))"))
    op.execute(sa.text(
        "UPDATE rollout_devices SET released_at = :now WHERE released_at IS NULL AND EXISTS "
        "(SELECT 1 FROM rollout_devices o WHERE o.device_id = rollout_devices.device_id "
        "AND o.released_at IS NULL AND o.rollout_id < rollout_devices.rollout_id)")
        .bindparams(now=time.time()))


def upgrade() -> None:
    op.add_column("rollout_devices", sa.Column("released_at", sa.Double(), nullable=True))
    _release_finished_and_overlapping()
    op.create_index("uq_rollout_devices_open_device", "rollout_devices", ["device_id"],
                    unique=True, sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index("ix_devices_state_last_seen", "devices", ["state", "last_seen"])


def downgrade() -> None:
    op.drop_index("ix_devices_state_last_seen", table_name="devices")
    op.drop_index("uq_rollout_devices_open_device", table_name="rollout_devices")
    with op.batch_alter_table("rollout_devices") as batch:
        batch.drop_column("released_at")
