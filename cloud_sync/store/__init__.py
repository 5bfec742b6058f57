"""The cloud store: tables (``schema``), engines, migrations, and the batch writes ingest uses.

Typical use::

    engine = open_store(cfg.db_url)              # engine + reachability check + upgrade head
    with transaction(engine) as conn:            # BEGIN IMMEDIATE on SQLite
        new = insert_messages(conn, rows)        # rows from rows.message_row(...)
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from cloud_sync.store.engine import check, create_engine, parse_url, safe_url, transaction
from cloud_sync.store.migrate import current_revision, head_revision, upgrade
from cloud_sync.store.retention import apply_retention
from cloud_sync.store.rows import message_row, sample_row
from cloud_sync.store.writes import (
    bump_counters,
    insert_ignoring_duplicates,
    insert_messages,
    insert_samples,
    read_counters,
)


def open_store(url: str, migrate: bool = True, **engine_options: object) -> Engine:
    """An engine for ``url``, checked to be reachable and (by default) migrated to head."""
    engine = create_engine(url, **engine_options)
    try:
        check(engine)
        if migrate:
            upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


__all__ = [
    "apply_retention", "bump_counters", "check", "create_engine", "current_revision",
    "head_revision", "insert_ignoring_duplicates", "insert_messages", "insert_samples",
    "message_row", "open_store", "parse_url", "read_counters", "safe_url", "sample_row",
    "transaction", "upgrade",
]
