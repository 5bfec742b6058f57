"""Batch writes for the hot path: idempotent inserts and counters, one round trip per batch.

Redelivered messages (MQTT QoS 1 is at-least-once) are skipped by the table's unique
key, and the caller learns how many rows were new. Each dialect has its fastest way,
registered in ``BATCH_INSERTS``: SQLite runs one ``INSERT ... ON CONFLICT DO NOTHING``
executemany; PostgreSQL COPYs the batch into a temporary table and moves it over with
one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` (psycopg's COPY is several
times faster than a multi-row INSERT, whose query parsing dominates).
"""

from __future__ import annotations

import json
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
                       key: Sequence[str], returning: Sequence[str] = ()) -> int | list[tuple]:
    """COPY into a staging table, then move the new rows over; with ``returning``, the
    listed columns of the rows inserted instead of their count."""
    cols = _data_columns(table)
    names, staging = ", ".join(cols), f"_edgekit_in_{table.name}"
    cur = conn.connection.dbapi_connection.cursor()
    try:
        _stage(cur, table, cols, rows, staging)
        back = f" RETURNING {', '.join(returning)}" if returning else ""
        cur.execute(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staging} "
                    f"ON CONFLICT ({', '.join(key)}) DO NOTHING{back}")
        inserted = [tuple(r) for r in cur.fetchall()] if returning else cur.rowcount
        cur.execute(f"DROP TABLE {staging}")
    finally:
        cur.close()
    return inserted


def upsert_rows(conn: Connection, table: sa.Table, rows: Sequence[dict], key: Sequence[str],
                update: Mapping[str, str]) -> None:
    """Insert ``rows`` (each with the same columns), or on a ``key`` conflict set each
    column of ``update`` to its SQL expression (``excluded.<c>``: the new row's value;
    ``<table>.<c>``: the stored one). PostgreSQL COPYs the rows into a staging table
    first (an executemany of JSON rows costs ~10x more); SQLite runs one executemany."""
    if not rows:
        return
    cols = list(rows[0])
    writer = UPSERT_WRITERS[conn.dialect.name] if len(rows) >= COPY_FROM_ROWS else _sql_upsert
    writer(conn, table, rows, cols, key, update)


COPY_FROM_ROWS = 50  # fewer rows: one executemany (a staging table costs a few ms)


def _sql_upsert(conn: Connection, table: sa.Table, rows: Sequence[dict], cols: list[str],
                key: Sequence[str], update: Mapping[str, str]) -> None:
    stmt = UPSERTS[conn.dialect.name](table)
    conn.execute(stmt.on_conflict_do_update(index_elements=list(key), set_={
        c: sa.text(expr) for c, expr in update.items()}), list(rows))


def _sqlite_upsert(conn: Connection, table: sa.Table, rows: Sequence[dict], cols: list[str],
                   key: Sequence[str], update: Mapping[str, str]) -> None:
    sets = ", ".join(f"{c} = {expr}" for c, expr in update.items())
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}",
        [tuple(_sqlite_value(row[c], c in _json_columns(table)) for c in cols)
         for row in rows])


def _sqlite_value(value: Any, is_json: bool) -> Any:
    return json.dumps(value) if is_json and value is not None else value


def _json_columns(table: sa.Table) -> set[str]:
    return {c.name for c in table.columns if isinstance(c.type, sa.JSON)}


def _postgresql_upsert(conn: Connection, table: sa.Table, rows: Sequence[dict],
                       cols: list[str], key: Sequence[str], update: Mapping[str, str]) -> None:
    names, staging = ", ".join(cols), f"_edgekit_up_{table.name}"
    sets = ", ".join(f"{c} = {expr}" for c, expr in update.items())
    cur = conn.connection.dbapi_connection.cursor()
    try:
        _stage(cur, table, cols, rows, staging)
        order = ", ".join(f'{c} COLLATE "C"' if isinstance(table.c[c].type, sa.String)
                          else c for c in key)  # Python's order of strings
        cur.execute(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staging} "
                    f"ORDER BY {order} "  # rows locked in key order: no deadlock
                    f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}")
        cur.execute(f"DROP TABLE {staging}")
    finally:
        cur.close()


UPSERT_WRITERS: dict[str, Callable[..., None]] = {
    "sqlite": _sqlite_upsert, "postgresql": _postgresql_upsert}


def _stage(cur: Any, table: sa.Table, cols: list[str], rows: Sequence[dict],
           staging: str) -> None:
    """A temporary table shaped like ``table``'s ``cols`` (dropped at commit), filled by
    COPY with ``rows``."""
    from psycopg.types.json import Jsonb

    json_cols = _json_columns(table)
    names = ", ".join(cols)
    cur.execute(f"CREATE TEMP TABLE {staging} ON COMMIT DROP AS "
                f"SELECT {names} FROM {table.name} WITH NO DATA")
    with cur.copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([_json(row.get(c), Jsonb) if c in json_cols else row.get(c)
                            for c in cols])


def _json(value: Any, wrap: Callable[[Any], Any]) -> Any:
    """JSON text as received where the row kept it (``rows.JsonDoc``), else ``wrap(value)``."""
    return value.text if isinstance(value, JsonDoc) else wrap(value)


BATCH_INSERTS: dict[str, Callable[..., int]] = {
    "sqlite": _sqlite_insert, "postgresql": _postgresql_insert}


def _sqlite_insert_new(conn: Connection, table: sa.Table, rows: Sequence[dict],
                       key: Sequence[str], returning: Sequence[str]) -> list[tuple]:
    """SQLite has one writer, and this runs in its write transaction (``BEGIN
    IMMEDIATE``): the batch's keys already stored, read first, are exactly the rows the
    insert will skip."""
    cols = [table.c[name] for name in key]
    stored: set[tuple] = set()
    for i in range(0, len(rows), CHUNK):
        chunk = [tuple(row[name] for name in key) for row in rows[i:i + CHUNK]]
        stored.update(tuple(r) for r in conn.execute(
            sa.select(*cols).where(sa.tuple_(*cols).in_(chunk))))
    _sqlite_insert(conn, table, rows, key)
    fresh, seen = [], set(stored)
    for row in rows:
        k = tuple(row[name] for name in key)
        if k not in seen:
            seen.add(k)
            fresh.append(tuple(row[name] for name in returning))
    return fresh


CHUNK = 400  # keys per SQLite read (4 columns each, under its bound-variable limit)
NEW_ROW_INSERTS: dict[str, Callable[..., list[tuple]]] = {
    "sqlite": _sqlite_insert_new, "postgresql": _postgresql_insert}


def insert_new_messages(conn: Connection, rows: Sequence[dict]) -> list[tuple]:
    """``insert_messages``, returning the (device_id, incarnation, kind, seq) of the rows
    that were new (what ingest adds to the window aggregates: a redelivery, skipped by
    the unique key, must not count twice)."""
    if not rows:
        return []
    return NEW_ROW_INSERTS[conn.dialect.name](conn, messages, rows,
                                              MESSAGE_KEYS[conn.dialect.name], MESSAGE_KEY)


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
