"""Alembic migrations shipped inside the package, run programmatically (no alembic.ini).

``upgrade(engine)`` brings any database (empty or older) to the newest schema and
is safe to call on every start, by several processes at once: PostgreSQL
serialises it with an advisory lock, SQLite with ``BEGIN IMMEDIATE``.

Adding a migration: write ``migrations/versions/NNNN_what.py`` with ``revision``
and ``down_revision`` (the previous file's revision), change ``schema.py`` to
match, and run the store tests (they compare the migrated database to
``schema.py`` on SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from cloud_sync.errors import StoreError
from cloud_sync.store.engine import safe_url, transaction
from edge_agent.errors import first_line

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_KEY = 0x6564676B  # "edgk": PostgreSQL advisory lock id held while migrating


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the shipped migrations (and at ``connection``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration shipped with this version of edgekit."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None: empty, never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` (default: newest); returns the revision now."""
    try:
        with transaction(engine) as conn:
            MIGRATION_LOCKS.get(conn.dialect.name, _no_lock)(conn)
            command.upgrade(alembic_config(conn), revision)
    except sa.exc.SQLAlchemyError as exc:
        cause = first_line(getattr(exc, "orig", None) or exc)
        raise StoreError(f"migrating database {safe_url(engine.url)} failed: {cause}") from None
    return current_revision(engine)


def _postgresql_lock(conn: Connection) -> None:
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def _no_lock(conn: Connection) -> None:
    """SQLite: the BEGIN IMMEDIATE of ``transaction`` already keeps other writers out."""


MIGRATION_LOCKS: dict[str, Callable[[Connection], None]] = {"postgresql": _postgresql_lock}
