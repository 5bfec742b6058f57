"""PostgreSQL: ``messages`` is partitioned by day of its device time ``ts`` (declarative
range partitioning, migration 0009), so retention drops whole days instead of deleting
row by row.

- A partition per UTC day, ``messages_p<YYYYMMDD>`` holding ``[day, day + 1 d)``, made
  ``AHEAD_DAYS`` ahead by the leader's retention pass (``maintain``) and at migration.
- ``messages_default`` (the DEFAULT partition) takes a row whose day has no partition:
  a device clock far off, or days the leader did not run. The batched age and cap
  deletes of ``retention.py`` still cover every row, so those go in time too.
  A day whose rows already sit in the default partition gets no partition of its own
  (PostgreSQL would refuse it); its rows stay in the default one.
- A partition whose whole day is older than ``telemetry_max_age_s`` is dropped, under a
  short ``lock_timeout`` (a drop needs the parent's exclusive lock for a moment: ingest
  waits at most that long, and a timed-out drop is retried at the next pass).

The unique key that makes ingest idempotent carries the partition key there:
``(device_id, incarnation, kind, seq, ts)``. A redelivered message has the same ``ts``
(it is the same payload), so duplicates still land on one row. SQLite keeps one
unpartitioned table and ``(device_id, incarnation, kind, seq)``.
"""

from __future__ import annotations

import calendar
import logging
import re
import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

DAY = 86400
AHEAD_DAYS = 2
TABLE = "messages"
DEFAULT = f"{TABLE}_default"
LOCK_TIMEOUT = "2s"
_NAME = re.compile(rf"^{TABLE}_p(\d{{8}})$")


def partition_name(day_start: float) -> str:
    """``messages_p<YYYYMMDD>`` of the UTC day starting at ``day_start``."""
    return f"{TABLE}_p{time.strftime('%Y%m%d', time.gmtime(day_start))}"


def day_of(ts: float) -> int:
    """The start of the UTC day holding ``ts``."""
    return int(ts // DAY * DAY)


def partitioned(conn: Connection) -> bool:
    """True where ``messages`` is a partitioned table (PostgreSQL after 0009)."""
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.execute(sa.text(
        "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = :t AND c.relnamespace = to_regnamespace(current_schema())::oid"),
        {"t": TABLE}).scalar())


def day_partitions(conn: Connection) -> dict[int, str]:
    """Day start -> name of every day partition of ``messages`` (in the current schema)."""
    names = conn.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :t "
        "AND p.relnamespace = to_regnamespace(current_schema())::oid"), {"t": TABLE}).scalars()
    found = {}
    for name in names:
        match = _NAME.match(name)
        if match:
            found[calendar.timegm(time.strptime(match.group(1), "%Y%m%d"))] = name
    return found


def create_day(conn: Connection, day_start: int) -> bool:
    """Make the partition of one day (in a savepoint); False when PostgreSQL refuses it
    (rows of that day are in the default partition already)."""
    name = partition_name(day_start)
    try:
        with conn.begin_nested():
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {TABLE} "
                f"FOR VALUES FROM ({float(day_start)!r}) TO ({float(day_start + DAY)!r})")
        return True
    except sa.exc.DBAPIError as exc:
        log.warning("retention: no partition for %s: %s", name, str(exc.orig).splitlines()[0])
        return False


@dataclass
class PartitionReport:
    """What one ``maintain`` did."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    rows_dropped: int = 0


def maintain(engine: Engine, max_age_s: float, now: float) -> PartitionReport:
    """Make the next days' partitions and drop the days wholly older than ``max_age_s``
    (each drop its own short transaction); nothing on an unpartitioned store."""
    report = PartitionReport()
    with engine.begin() as conn:
        if not partitioned(conn):
            return report
        existing = day_partitions(conn)
        for day in range(day_of(now), day_of(now) + (AHEAD_DAYS + 1) * DAY, DAY):
            if day not in existing and create_day(conn, day):
                report.created.append(partition_name(day))
    cutoff = now - max_age_s
    for day, name in sorted(existing.items()):
        if day + DAY > cutoff:
            break
        n = _drop(engine, name)
        if n is not None:
            report.dropped.append(name)
            report.rows_dropped += n
    return report


def _drop(engine: Engine, name: str) -> int | None:
    """Drop one partition; its row count, or None when the lock was not had in time."""
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            rows = conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar()
            conn.exec_driver_sql(f"DROP TABLE {name}")
        return int(rows)
    except sa.exc.OperationalError as exc:
        log.warning("retention: partition %s not dropped yet: %s", name,
                    str(exc.orig).splitlines()[0])
        return None
