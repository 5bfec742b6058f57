"""PostgreSQL: ``messages`` partitioned by day of ``ts`` (issue 21), so retention drops
whole days. SQLite: nothing changes.

The table is rebuilt: the old one is renamed, a partitioned one made LIKE it (same
columns, defaults and id sequence), the rows copied, the old one dropped. Its primary
key becomes ``(id, ts)`` and its unique key ``(device_id, incarnation, kind, seq, ts)``:
PostgreSQL requires the partition key in both. A partition per day that holds rows (up
to ``MAX_DAYS`` back) and the next days, and a DEFAULT partition for the rest. The
leader makes later days' partitions (``cloud_sync.store.partitions``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

Frozen once released, like 0001-0008 (names spelt out, not imported).
"""

from __future__ import annotations

import time

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DAY = 86400
AHEAD_DAYS = 2
MAX_DAYS = 400  # older rows go to the default partition (and retention)
OLD_UQ = "uq_messages_device_id_incarnation_kind_seq"
NEW_UQ = "uq_messages_device_id_incarnation_kind_seq_ts"
INDEXES = (("ix_messages_received_at", "received_at"),
           ("ix_messages_device_id_kind_ts", "device_id, kind, ts"))


def _day_name(day: int) -> str:
    return f"messages_p{time.strftime('%Y%m%d', time.gmtime(day))}"


def _partition(day: int) -> None:
    op.execute(f"CREATE TABLE {_day_name(day)} PARTITION OF messages "
               f"FOR VALUES FROM ({float(day)!r}) TO ({float(day + DAY)!r})")


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    conn = op.get_bind()
    op.execute("ALTER TABLE messages RENAME TO messages_unpartitioned")
    for name, _cols in INDEXES:
        op.execute(f"DROP INDEX {name}")
    op.execute(f"ALTER TABLE messages_unpartitioned DROP CONSTRAINT {OLD_UQ}")
    op.execute("ALTER TABLE messages_unpartitioned DROP CONSTRAINT pk_messages")
    op.execute("CREATE TABLE messages (LIKE messages_unpartitioned INCLUDING DEFAULTS "
               "INCLUDING STORAGE) PARTITION BY RANGE (ts)")
    sequence = conn.exec_driver_sql(
        "SELECT pg_get_serial_sequence('messages_unpartitioned', 'id')").scalar()
    if sequence:
        op.execute(f"ALTER SEQUENCE {sequence} OWNED BY messages.id")
    op.execute("ALTER TABLE messages ADD CONSTRAINT pk_messages PRIMARY KEY (id, ts)")
    op.execute(f"ALTER TABLE messages ADD CONSTRAINT {NEW_UQ} "
               "UNIQUE (device_id, incarnation, kind, seq, ts)")
    for name, cols in INDEXES:
        op.execute(f"CREATE INDEX {name} ON messages ({cols})")
    op.execute("CREATE TABLE messages_default PARTITION OF messages DEFAULT")
    today = int(time.time() // DAY * DAY)
    days = {today + i * DAY for i in range(AHEAD_DAYS + 1)}
    days |= {int(d) for d in conn.exec_driver_sql(
        "SELECT DISTINCT floor(ts / 86400) * 86400 FROM messages_unpartitioned "
        f"WHERE ts >= {float(today - MAX_DAYS * DAY)!r} "
        f"AND ts < {float(today + (AHEAD_DAYS + 1) * DAY)!r}").scalars()}
    for day in sorted(days):
        _partition(day)
    op.execute("INSERT INTO messages SELECT * FROM messages_unpartitioned")
    op.execute("DROP TABLE messages_unpartitioned")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    conn = op.get_bind()
    op.execute("CREATE TABLE messages_flat (LIKE messages INCLUDING DEFAULTS INCLUDING STORAGE)")
    sequence = conn.exec_driver_sql("SELECT pg_get_serial_sequence('messages', 'id')").scalar()
    if sequence:
        op.execute(f"ALTER SEQUENCE {sequence} OWNED BY messages_flat.id")
    # a seq reused with another ts would break the narrower key: keep the newest row
    op.execute("INSERT INTO messages_flat SELECT DISTINCT ON (device_id, incarnation, kind, seq) "
               "* FROM messages ORDER BY device_id, incarnation, kind, seq, id DESC")
    op.execute("DROP TABLE messages")  # its partitions go with it
    op.execute("ALTER TABLE messages_flat RENAME TO messages")
    op.execute("ALTER TABLE messages ADD CONSTRAINT pk_messages PRIMARY KEY (id)")
    op.execute(f"ALTER TABLE messages ADD CONSTRAINT {OLD_UQ} "
               "UNIQUE (device_id, incarnation, kind, seq)")
    for name, cols in INDEXES:
        op.execute(f"CREATE INDEX {name} ON messages ({cols})")
