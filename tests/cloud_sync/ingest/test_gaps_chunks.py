"""Gap tracking over a batch with more (device, incarnation, kind) keys than one statement
may bind: the tuple ``IN`` lists (3 parameters a key) of the heads read (SQLite) and of the
late seqs' gaps (both stores) run in chunks, on PostgreSQL past its 65,535 parameters and
on SQLite past its variable limit (SQLite's default 32,766, set here: a Python's own SQLite
may be built with more)."""

from __future__ import annotations

import sqlite3

from sqlalchemy import event

from cloud_sync.ingest import gaps
from cloud_sync.store import transaction

KEYS = 22_000  # x 3 columns = 66,000 bound values: past PostgreSQL's 65,535 and SQLite's 32,766
WITH_GAP = 3


def _key(i: int) -> gaps.Key:
    return (f"dev-{i:05d}", "inc-a", "telemetry")


def _sqlite_default_limit(dbapi_conn, _record) -> None:
    dbapi_conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)


def test_a_batch_with_more_keys_than_one_statement_binds(engine):
    if engine.dialect.name == "sqlite":
        engine.dispose()
        event.listen(engine, "connect", _sqlite_default_limit)
    first = {_key(i): [1, 3] if i < WITH_GAP else [5] for i in range(KEYS)}
    with transaction(engine) as conn:
        report = gaps.track(conn, first, 1.0)
    assert report.missing == {"telemetry": WITH_GAP}  # seq 2 of the first keys

    late = {_key(i): [2] for i in range(KEYS)}  # every key's seq 2, at or below its head
    with transaction(engine) as conn:
        report = gaps.track(conn, late, 2.0)
        heads = gaps.read_heads(conn, late)
        left = conn.exec_driver_sql("SELECT count(*) FROM seq_gaps").scalar()
    assert report.filled == {"telemetry": WITH_GAP} and report.missing == {}
    assert len(heads) == KEYS and heads[_key(0)] == 3 and heads[_key(KEYS - 1)] == 5
    assert left == 0
