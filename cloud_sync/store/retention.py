"""Retention: delete history that is older or more than the configured limits.

Each bounded table is one ``Policy`` (data, not code): its time column and the
config fields holding its age and row limits. ``apply_retention`` is what the
background job calls every ``Retention.interval_s``; it is idempotent and cheap
when nothing is over (index range scans on the time column and the id).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.config import Retention
from cloud_sync.store.schema import messages, quarantine, samples, seq_gaps


@dataclass(frozen=True)
class Policy:
    """How one table is bounded: by the age of ``time_column`` and by its row count."""

    table: sa.Table
    time_column: str
    max_age_field: str
    max_rows_field: str


POLICIES = (
    Policy(messages, "received_at", "telemetry_max_age_s", "telemetry_max_rows"),
    Policy(samples, "received_at", "samples_max_age_s", "samples_max_rows"),
    Policy(quarantine, "received_at", "quarantine_max_age_s", "quarantine_max_rows"),
    Policy(seq_gaps, "detected_at", "gaps_max_age_s", "gaps_max_rows"),
)


def _delete_old(conn: Connection, policy: Policy, cutoff: float) -> int:
    table = policy.table
    return conn.execute(sa.delete(table).where(table.c[policy.time_column] < cutoff)).rowcount


def _delete_over(conn: Connection, policy: Policy, max_rows: int) -> int:
    table = policy.table
    newest_dropped = (sa.select(table.c.id).order_by(table.c.id.desc())
                      .offset(max_rows).limit(1).scalar_subquery())
    return conn.execute(sa.delete(table).where(table.c.id <= newest_dropped)).rowcount


def apply_retention(conn: Connection, retention: Retention, now: float) -> dict[str, int]:
    """Delete rows past their age or count limit; returns rows deleted per table."""
    deleted = {}
    for policy in POLICIES:
        cutoff = now - getattr(retention, policy.max_age_field)
        n = _delete_old(conn, policy, cutoff)
        n += _delete_over(conn, policy, getattr(retention, policy.max_rows_field))
        deleted[policy.table.name] = n
    return deleted
