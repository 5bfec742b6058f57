"""Migrations: from empty to head, idempotent on restart, concurrent starts, and the
migrated database matches ``schema.py`` exactly (on SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cloud_sync.errors import StoreError
from cloud_sync.store import create_engine, current_revision, head_revision, upgrade
from cloud_sync.store.schema import metadata

TABLES = {"devices", "service_accounts", "messages", "samples", "seq_gaps", "quarantine",
          "ingest_stats", "models", "artifacts", "bundles", "leader_lock", "seq_heads",
          "drift_scores", "triggers", "actions", "action_attempts", "rollouts",
          "rollout_devices", "rollout_events", "telemetry_windows", "fleet_windows",
          "window_coverage",
          "alembic_version"}


def _partition(name: str) -> bool:
    """A day or default partition of PostgreSQL's ``messages`` (0009, store/partitions.py)."""
    return re.fullmatch(r"messages_(p\d{8}|default)", name) is not None


def test_upgrade_from_empty_creates_every_table(db_url):
    engine = create_engine(db_url)
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision()
    names = sa.inspect(engine).get_table_names()
    assert {n for n in names if not _partition(n)} == TABLES
    assert any(_partition(n) for n in names) == (engine.dialect.name == "postgresql")
    engine.dispose()


def test_upgrade_is_idempotent_on_restart(db_url):
    for _ in range(2):  # two "starts" of the service
        engine = create_engine(db_url)
        assert upgrade(engine) == head_revision()
        engine.dispose()


def test_migrated_database_matches_schema_py(engine):
    def include_name(name, kind, _parent):  # partitions are made by the leader, not schema.py
        return not (kind == "table" and _partition(name))

    def include_object(obj, _name, _kind, reflected, _compare_to):  # schema.py's ddl_if
        only = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
        return reflected or only in (None, engine.dialect.name)

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "include_name": include_name,
                                                     "include_object": include_object})
        assert compare_metadata(ctx, metadata) == []


def test_concurrent_starts_migrate_once(db_url):
    errors: list[BaseException] = []

    def start() -> None:
        engine = create_engine(db_url)
        try:
            upgrade(engine)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    engine = create_engine(db_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_a_failing_migration_is_one_clear_error(db_url, monkeypatch):
    from alembic import command

    def broken(*_args, **_kw):
        raise sa.exc.OperationalError("ALTER", {}, Exception("disk full"))

    monkeypatch.setattr(command, "upgrade", broken)
    with pytest.raises(StoreError, match=r"migrating database .* failed: disk full"):
        upgrade(create_engine(db_url))


def test_0005_keeps_earlier_rows_as_the_legacy_incarnation_and_downgrades(db_url):
    from alembic import command

    from cloud_sync.store.migrate import alembic_config

    engine = create_engine(db_url)
    upgrade(engine, "0004")
    insert = ("INSERT INTO messages (device_id, fleet, {inc}kind, seq, ts, received_at, payload) "
              "VALUES ('pi-1', 'lab', {val}'telemetry', 5, 1.0, 1.0, '{{}}')")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO seq_heads VALUES ('pi-1', 'telemetry', 5, 1.0)")
        conn.exec_driver_sql(insert.format(inc="", val=""))
    upgrade(engine, "0005")
    with engine.begin() as conn:
        assert conn.exec_driver_sql("SELECT incarnation, head FROM seq_heads").all() == [("", 5)]
        conn.exec_driver_sql(insert.format(inc="incarnation, ", val="'b7', "))  # a new outbox
        conn.exec_driver_sql("INSERT INTO seq_heads (device_id, incarnation, kind, head, "
                             "updated_at) VALUES ('pi-1', 'b7', 'telemetry', 5, 2.0)")
    with engine.connect() as conn:
        command.downgrade(alembic_config(conn), "0004")
        conn.commit()
    with engine.connect() as conn:  # back to one row per (device, kind, seq): the newest
        assert conn.exec_driver_sql("SELECT count(*) FROM messages").scalar() == 1
        assert conn.exec_driver_sql("SELECT head, updated_at FROM seq_heads").all() == [
            (5, 2.0)]
    assert upgrade(engine) == head_revision()
    engine.dispose()
