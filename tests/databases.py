"""Databases for the cloud tests: SQLite (a temp file) and PostgreSQL, as pytest fixtures.

PostgreSQL is the server at 127.0.0.1:5432 (trust auth, user postgres or root,
database ``test``); each test gets its own freshly created schema (reached through
the URL's ``search_path``), dropped afterwards, so nobody else's data is touched.
Without a reachable server the PostgreSQL cases are skipped, saying why.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from edgekit.local_broker import port_open

PG_HOST, PG_PORT, PG_DATABASE = "127.0.0.1", 5432, "test"
PG_USERS = ("postgres", "root")
DIALECTS = ("sqlite", "postgresql")


def _pg_admin_url() -> str | None:
    """A URL of database ``test`` that accepts us, or None (server down, no such user)."""
    if not port_open(PG_HOST, PG_PORT, timeout=0.5):
        return None
    import sqlalchemy as sa

    for user in PG_USERS:
        url = f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}"
        engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
        try:
            with engine.connect():
                return url
        except sa.exc.OperationalError:
            continue
        finally:
            engine.dispose()
    return None


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = _pg_admin_url()
    if url is None:
        pytest.skip(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} (database "
                    f"'{PG_DATABASE}', users {'/'.join(PG_USERS)}): PostgreSQL cases skipped")
    return url


def _pg_schema_url(admin_url: str) -> Iterator[str]:
    import sqlalchemy as sa

    schema = f"edgekit_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{admin_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=DIALECTS)
def db_url(request, tmp_path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cloud' / 'edgekit.db'}"
        return
    yield from _pg_schema_url(request.getfixturevalue("pg_admin_url"))
