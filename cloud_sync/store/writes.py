"""Batch writes for the hot path: idempotent inserts and counters, one round trip per batch.

Redelivered messages (MQTT QoS 1 is at-least-once) are skipped by the table's unique
key, and the caller learns how many rows were new. Each dialect has its fastest way,
registered in ``BATCH_INSERTS``: SQLite runs one ``INSERT ... ON CONFLICT DO NOTHING``
executemany; PostgreSQL COPYs the batch into a temporary table and moves it over with
one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` (psycopg's COPY is several
times faster than a multi-row INSERT, whose query parsing dominates).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from cloud_sync.store.rows import JsonDoc
from cloud_sync.store.schema import ingest_stats, messages, samples

UPSERTS: dict[str, Callable[[sa.Table], Any]] = {
    "sqlite": sqlite.insert, "postgresql": postgresql.insert}
MESSAGE_KEY = ("device_id", "incarnation", "kind", "seq")
# PostgreSQL's messages are partitioned by ts, which its unique key must hold (0009)
MESSAGE_KEYS = {"sqlite": MESSAGE_KEY, "postgresql": (*MESSAGE_KEY, "ts")}
SAMPLE_KEY = ("device_id", "incarnation", "seq")


def _data_columns(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns if not (c.primary_key and c.autoincrement is True)]


def _sqlite_insert(conn: Connection, table: sa.Table, rows: Sequence[dict],
                   key: Sequence[str]) -> int:
    stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(key))
    return conn.execute(stmt, list(rows)).rowcount


def _postgresql_insert(conn: Connection, table: sa.Table, rows: Sequence[dict],
                       key: Sequence[str]) -> int:
    from psycopg.types.json import Jsonb

    cols = _data_columns(table)
    json_cols = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
    names, staging = ", ".join(cols), f"_edgekit_in_{table.name}"
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(f"CREATE TEMP TABLE {staging} ON COMMIT DROP AS "
                    f"SELECT {names} FROM {table.name} WITH NO DATA")
        with cur.copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([_json(row.get(c), Jsonb) if c in json_cols else row.get(c)
                                for c in cols])
        cur.execute(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staging} "
                    f"ON CONFLICT ({', '.join(key)}) DO NOTHING")
        inserted = cur.rowcount
        cur.execute(f"DROP TABLE {staging}")
    finally:
        cur.close()
    return inserted


def _json(value: Any, wrap: Callable[[Any], Any]) -> Any:
    """JSON text as received where the row kept it (``rows.JsonDoc``), else ``wrap(value)``."""
    return value.text if isinstance(value, JsonDoc) else wrap(value)


BATCH_INSERTS: dict[str, Callable[..., int]] = {
    "sqlite": _sqlite_insert, "postgresql": _postgresql_insert}


def insert_ignoring_duplicates(conn: Connection, table: sa.Table, rows: Sequence[dict],
                               key: Sequence[str]) -> int:
    """Insert ``rows``, skipping any whose ``key`` columns already exist (in the table or
    earlier in the batch); returns how many were inserted. Rows carry every column but
    the autoincrement id (see ``rows.message_row``); runs in the caller's transaction."""
    if not rows:
        return 0
    return BATCH_INSERTS[conn.dialect.name](conn, table, rows, key)


def insert_messages(conn: Connection, rows: Sequence[dict]) -> int:
    """Store telemetry/status/result rows idempotently on (device_id, incarnation, kind, seq)
    (and ``ts`` on PostgreSQL, whose partitions it picks)."""
    return insert_ignoring_duplicates(conn, messages, rows, MESSAGE_KEYS[conn.dialect.name])


def insert_samples(conn: Connection, rows: Sequence[dict]) -> int:
    """Store sample rows idempotently on (device_id, incarnation, seq)."""
    return insert_ignoring_duplicates(conn, samples, rows, SAMPLE_KEY)


def bump_counters(conn: Connection, counts: Mapping[str, int], now: float) -> None:
    """Add ``counts`` to the ``ingest_stats`` counters (created at first use)."""
    if not counts:
        return
    stmt = UPSERTS[conn.dialect.name](ingest_stats)
    stmt = stmt.on_conflict_do_update(
        index_elements=["counter"],
        set_={"value": ingest_stats.c.value + stmt.excluded.value,
              "updated_at": stmt.excluded.updated_at})
    conn.execute(stmt, [{"counter": name, "value": n, "updated_at": now}
                        for name, n in sorted(counts.items())])


def read_counters(conn: Connection) -> dict[str, int]:
    """Every ingest counter and its value."""
    return dict(conn.execute(sa.select(ingest_stats.c.counter, ingest_stats.c.value)).all())
