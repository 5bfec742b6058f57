"""SQLite errors are told apart by their result code: a busy, locked or unopenable file is
retried (``UNAVAILABLE``), a permanent error ("too many SQL variables", "no such table",
a malformed file) is not transient, so the worker splits the batch and quarantines the
message the store refuses instead of retrying it forever. Real sqlite3 errors, raw and
wrapped by SQLAlchemy."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloud_sync.ingest import retry


def _locked(tmp: Path) -> None:
    holder = sqlite3.connect(tmp / "db", isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(tmp / "db", timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        holder.close()


def _cantopen(tmp: Path) -> None:
    sqlite3.connect(tmp / "no" / "such" / "folder" / "db").execute("SELECT 1")


def _too_many_variables(tmp: Path) -> None:
    conn = sqlite3.connect(tmp / "db")
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    conn.execute(f"SELECT 1 WHERE 1 IN ({','.join('?' * (limit + 1))})", [1] * (limit + 1))


def _no_such_table(tmp: Path) -> None:
    sqlite3.connect(tmp / "db").execute("SELECT * FROM messages")


def _malformed(tmp: Path) -> None:
    (tmp / "db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4080)
    sqlite3.connect(tmp / "db").execute("SELECT * FROM sqlite_master")


def _constraint(tmp: Path) -> None:
    conn = sqlite3.connect(tmp / "db")
    conn.execute("CREATE TABLE t (x UNIQUE)")
    conn.executemany("INSERT INTO t VALUES (?)", [(1,), (1,)])


CASES: dict[str, tuple[Callable[[Path], None], str, str | None]] = {
    "busy/locked": (_locked, "SQLITE_BUSY", retry.UNAVAILABLE),
    "cannot open": (_cantopen, "SQLITE_CANTOPEN", retry.UNAVAILABLE),
    "too many SQL variables": (_too_many_variables, "SQLITE_ERROR", None),
    "no such table": (_no_such_table, "SQLITE_ERROR", None),
    "malformed": (_malformed, "SQLITE_NOTADB", None),
    "constraint": (_constraint, "SQLITE_CONSTRAINT", None),
}


def _raise(make: Callable[[Path], None], tmp: Path) -> sqlite3.Error:
    with pytest.raises(sqlite3.Error) as caught:
        make(tmp)
    return caught.value


@pytest.mark.parametrize("name", sorted(CASES))
def test_sqlite_errors_are_classified_by_their_result_code(name, tmp_path):
    make, errorname, kind = CASES[name]
    error = _raise(make, tmp_path)
    assert error.sqlite_errorname.startswith(errorname), (error, error.sqlite_errorname)
    assert retry.transient_kind(error) == kind
    wrapped = sa.exc.DBAPIError.instance("SELECT 1", {}, error, sqlite3.Error)
    assert isinstance(wrapped, sa.exc.OperationalError if isinstance(
        error, sqlite3.OperationalError) else sa.exc.DBAPIError)
    assert retry.transient_kind(wrapped) == kind


def test_too_many_variables_through_an_engine_is_not_retried(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db'}")
    try:
        with engine.connect() as conn:
            limit = conn.connection.dbapi_connection.getlimit(
                sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            with pytest.raises(sa.exc.OperationalError) as caught:
                conn.execute(sa.select(sa.literal(1)).where(
                    sa.literal(1).in_(list(range(limit + 1)))))
    finally:
        engine.dispose()
    assert "too many SQL variables" in str(caught.value)
    assert retry.transient_kind(caught.value) is None


def test_psycopg_refusing_too_many_parameters_is_not_taken_for_a_lost_connection():
    psycopg = pytest.importorskip("psycopg")
    error = psycopg.OperationalError("sending query and params failed: number of parameters "
                                     "must be between 0 and 65535")
    assert retry.transient_kind(error) is None
    assert retry.transient_kind(
        sa.exc.DBAPIError.instance("SELECT 1", {}, error, psycopg.Error)) is None
