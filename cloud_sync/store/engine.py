"""Engines from a database URL: SQLite (the embedded default) or PostgreSQL via psycopg 3.

``sqlite:///PATH`` gets WAL, a busy timeout, foreign keys and real transactions
(pysqlite's own implicit BEGIN is switched off and SQLAlchemy emits ``BEGIN``;
``transaction(engine)`` emits ``BEGIN IMMEDIATE`` so read-then-write transactions
never fail on a stale snapshot). ``postgresql://`` and ``postgres://`` are mapped to
``postgresql+psycopg://``; a search path can be given the libpq way, e.g.
``postgresql://u@h/db?options=-csearch_path%3Dmyschema``.

PostgreSQL connections probe a silent peer with TCP keepalives on both ends
(``PG_KEEPALIVES``: libpq's on ours, the session's ``tcp_keepalives_*`` on the
server's), so when a host dies without closing its sockets the other side knows
within about a minute, not the kernel's two hours: the server then ends a dead
leader's session and its advisory lock goes to another instance. Each connection is
named ``edgekit-<pid>`` (``application_name``, unless the URL names one), so
``pg_stat_activity`` shows which process holds what.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from cloud_sync.errors import StoreError
from edge_agent.errors import first_line

BUSY_TIMEOUT_MS = 30_000
DRIVERS = {  # what users write -> the driver we use
    "sqlite": "sqlite+pysqlite", "sqlite+pysqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
URL_HINT = "use sqlite:///PATH/edgekit.db or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL for a user's database URL, with our driver; StoreError if unusable."""
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise StoreError(f"database URL {redact_url(url)!r} is not a URL; {URL_HINT}") from None
    driver = DRIVERS.get(parsed.drivername)
    if driver is None:
        raise StoreError(f"database URL scheme {parsed.drivername!r} is not supported; {URL_HINT}")
    if driver.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        raise StoreError(f"SQLite URL {safe_url(parsed)!r} names no file; {URL_HINT}")
    if driver.startswith("postgresql") and not parsed.database:
        raise StoreError(f"PostgreSQL URL {safe_url(parsed)} names no database; {URL_HINT}")
    return parsed.set(drivername=driver)


def safe_url(url: URL | str) -> str:
    """The URL with its password hidden, for messages and logs (also one that does not
    parse, and a ``password`` in its query)."""
    try:
        parsed = url if isinstance(url, URL) else sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return redact_url(str(url))
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True)


_USERINFO_PASSWORD = re.compile(r"(://[^/?#@]*?:)[^/?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.I)


def redact_url(text: str) -> str:
    """``text`` (a URL, or a message holding one) with the password of every
    ``scheme://user:password@`` and every ``password=`` query value shown as ``***``; for
    text that does not parse as a URL."""
    return _QUERY_PASSWORD.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1***@", text))


def create_engine(url: str, **options: object) -> Engine:
    """An engine for ``url`` set up for its dialect; connects lazily (see ``check``)."""
    parsed = parse_url(url)
    dialect = parsed.get_backend_name()
    return DIALECT_ENGINES[dialect](parsed, **options)


def _sqlite_engine(url: URL, **options: object) -> Engine:
    path = Path(url.database).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder of SQLite file {path}: {exc.strerror}; "
                         "pick a writable --db or data folder") from None
    engine = sa.create_engine(url.set(database=str(path)),
                              connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, **options)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # SQLAlchemy, not pysqlite, decides when BEGIN happens
    cursor = dbapi_conn.cursor()
    try:
        for pragma in (f"busy_timeout={BUSY_TIMEOUT_MS}", "foreign_keys=ON", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        _switch_to_wal(cursor)
    finally:
        cursor.close()


def _switch_to_wal(cursor, timeout_s: float = BUSY_TIMEOUT_MS / 1000) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another connection holds the file.

    On a new file, two connections switching at once can deadlock on their shared
    locks; SQLite then answers "database is locked" at once, without the busy handler,
    so the wait is ours: brief retries up to the busy timeout.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("edgekit_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


PG_KEEPALIVES = {"idle": 20, "interval": 10, "count": 4}  # a dead peer is dropped in ~60 s
PG_USER_TIMEOUT_MS = 60_000  # unacknowledged data (a query to a dead server) fails as fast


def pg_connect_args(url: URL) -> dict[str, object]:
    """libpq parameters of every connection: timeouts, keepalives, our name."""
    args: dict[str, object] = {
        "connect_timeout": 10, "keepalives": 1, "tcp_user_timeout": PG_USER_TIMEOUT_MS,
        **{f"keepalives_{k}": v for k, v in PG_KEEPALIVES.items()}}
    if "application_name" not in url.query:
        args["application_name"] = f"edgekit-{os.getpid()}"
    return args


def _postgresql_engine(url: URL, **options: object) -> Engine:
    options = {"pool_pre_ping": True, **options}
    engine = sa.create_engine(url, connect_args=pg_connect_args(url), **options)
    event.listen(engine, "connect", _postgresql_on_connect)
    return engine


PG_USER_TIMEOUT_SINCE = 120000  # server_version_num of PostgreSQL 12, the first with it


def _postgresql_on_connect(dbapi_conn, _record) -> None:
    """The server side's keepalives for this session (any user may set them);
    ``tcp_user_timeout`` only where the server has it (PostgreSQL 12 and later)."""
    with dbapi_conn.cursor() as cursor:
        for name, value in PG_KEEPALIVES.items():
            cursor.execute(f"SET tcp_keepalives_{name} = {int(value)}")
        if dbapi_conn.info.server_version >= PG_USER_TIMEOUT_SINCE:
            cursor.execute(f"SET tcp_user_timeout = {PG_USER_TIMEOUT_MS}")
    dbapi_conn.commit()


DIALECT_ENGINES: dict[str, Callable[..., Engine]] = {
    "sqlite": _sqlite_engine, "postgresql": _postgresql_engine}


def check(engine: Engine) -> None:
    """Connect once; StoreError with a hint when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError as exc:
        cause = _without(first_line(getattr(exc, "orig", None) or exc), engine.url.password)
        raise StoreError(f"cannot reach database {safe_url(engine.url)}: {cause}; check the "
                         "--db URL and that the server runs and accepts this user") from None


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success."""
    with engine.connect().execution_options(edgekit_write=True) as conn, conn.begin():
        yield conn


def _without(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (a password a driver may echo) shown as ``***``."""
    return text.replace(secret, "***") if secret else text
