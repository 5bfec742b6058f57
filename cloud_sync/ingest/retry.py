"""Which store failures are worth retrying, and how: the ingest worker's retry rules.

A batch stays unacknowledged while it is retried, so the broker keeps its messages;
a failure that is not transient is the batch's own fault and is split down to the one
message the store refuses (quarantined as ``store_error``). The errors come wrapped by
SQLAlchemy, or raw from psycopg on the COPY path (``store/writes.py`` drives the
driver's cursor itself), so both are read by their SQLSTATE; SQLite's errors carry no
SQLSTATE and are read by their result code (``sqlite_errorcode``, Python 3.11):

- ``UNAVAILABLE``: the database cannot be used now (connection lost or refused, server
  shutting down, out of connections or disk; SQLite busy, locked, I/O error, disk full,
  file cannot be opened: ``SQLITE_UNAVAILABLE``). Retried until it comes back. Any other
  SQLite error ("too many SQL variables", "no such table", a malformed file...) is not
  transient: retrying it forever would stall the worker.
- ``CONTENTION``: this transaction lost against another (deadlock, serialization
  failure, lock or statement timeout). Retried ``CONTENTION_RETRIES`` times, then the
  batch is split as for any other failure, so a message that always times out cannot
  stall its worker.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import sqlalchemy as sa

UNAVAILABLE, CONTENTION = "unavailable", "contention"
CONTENTION_STATES = {"40001": "serialization failure", "40P01": "deadlock detected",
                     "55P03": "lock timeout", "57014": "statement timeout"}
UNAVAILABLE_CLASSES = ("08", "53", "57P")  # connection; insufficient resources; shutdown
# SQLite primary result codes (an extended code's low byte): BUSY, LOCKED, IOERR, FULL, CANTOPEN
SQLITE_UNAVAILABLE = {5: "SQLITE_BUSY", 6: "SQLITE_LOCKED", 10: "SQLITE_IOERR",
                      13: "SQLITE_FULL", 14: "SQLITE_CANTOPEN"}
# psycopg's own refusals of a statement (raised as OperationalError, without SQLSTATE):
# the statement's fault, not the connection's
PSYCOPG_REFUSALS = ("number of parameters must be between",)
CONTENTION_RETRIES = 6
BACKOFF = (0.2, 10.0)  # first and longest wait between tries, seconds


class StoreUnavailable(Exception):
    """The database cannot take writes now; retry the same batch later."""


def transient_kind(exc: BaseException) -> str | None:
    """``UNAVAILABLE``, ``CONTENTION`` or None (not transient) for a store failure."""
    for err in _chain(exc):
        if isinstance(err, sqlite3.Error):
            return UNAVAILABLE if _sqlite_unavailable(err) else None
        state = getattr(err, "sqlstate", None)
        if state in CONTENTION_STATES:
            return CONTENTION
        if state and state.startswith(UNAVAILABLE_CLASSES):
            return UNAVAILABLE
        if state is None and _is_lost_connection(err):
            return UNAVAILABLE
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return UNAVAILABLE
    if isinstance(exc, sa.exc.OperationalError) and not _has_driver_error(exc):
        return UNAVAILABLE  # a server that cannot be reached (no driver error to read)
    return None


def _sqlite_unavailable(err: sqlite3.Error) -> bool:
    """Whether a SQLite error says the file cannot be used now (busy, locked, I/O, full,
    cannot open), by its result code; without one (pysqlite's own errors), never."""
    code = getattr(err, "sqlite_errorcode", None)
    if code is None:
        return False
    return (code & 0xFF) in SQLITE_UNAVAILABLE


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the driver error it wraps, and the errors it was raised from or during."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 16:
        err = todo.pop(0)
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        yield err
        todo += [getattr(err, "orig", None), err.__cause__, err.__context__]


def _is_lost_connection(err: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(err, psycopg.OperationalError) and not any(
        refusal in str(err) for refusal in PSYCOPG_REFUSALS)


def _has_driver_error(exc: BaseException) -> bool:
    """Whether a driver's own error (judged above) is in the chain: a SQLSTATE, or psycopg's."""
    return any(getattr(err, "sqlstate", None) or type(err).__module__.startswith("psycopg")
               for err in _chain(exc))
