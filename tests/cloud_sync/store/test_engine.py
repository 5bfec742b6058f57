"""Engines from user URLs: driver mapping, SQLite pragmas, one-line errors."""

from __future__ import annotations

import pytest

from cloud_sync.errors import StoreError
from cloud_sync.store import check, create_engine, open_store, parse_url, transaction


@pytest.mark.parametrize("url, driver", [
    ("postgresql://u@h/db", "postgresql+psycopg"),
    ("postgres://u@h:5433/db", "postgresql+psycopg"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
    ("sqlite:////tmp/x.db", "sqlite+pysqlite"),
])
def test_user_urls_map_to_our_drivers(url, driver):
    assert parse_url(url).drivername == driver


@pytest.mark.parametrize("url, message", [
    ("mysql://u@h/db", "scheme 'mysql' is not supported"),
    ("not a url", "is not a URL"),
    ("sqlite://", "names no file"),
    ("sqlite:///:memory:", "names no file"),
    ("postgresql://u@h", "names no database"),
])
def test_bad_urls_are_one_line_with_the_fix(url, message):
    with pytest.raises(StoreError, match=message) as info:
        parse_url(url)
    assert "use sqlite:///" in str(info.value) and "\n" not in str(info.value)


def test_sqlite_gets_wal_busy_timeout_and_foreign_keys(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'new' / 'sub' / 'edgekit.db'}")
    with engine.connect() as conn:
        pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                  for name in ("journal_mode", "busy_timeout", "foreign_keys")}
    assert pragma == {"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1}
    engine.dispose()


def test_sqlite_transactions_are_real(tmp_path):
    """pysqlite's implicit BEGIN is off: a rolled-back DDL + insert leaves nothing behind."""
    engine = create_engine(f"sqlite:///{tmp_path / 'edgekit.db'}")
    with pytest.raises(RuntimeError), transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        raise RuntimeError("stop")
    with engine.connect() as conn:
        assert conn.exec_driver_sql(
            "SELECT count(*) FROM sqlite_master WHERE name = 't'").scalar() == 0
    engine.dispose()


def test_unreachable_postgresql_is_one_line_with_the_fix():
    engine = create_engine("postgresql://nobody:secret@127.0.0.1:1/nowhere")
    with pytest.raises(StoreError) as info:
        check(engine)
    text = str(info.value)
    assert "cannot reach database" in text and "check the --db URL" in text
    assert "secret" not in text and "\n" not in text


def test_open_store_migrates(db_url):
    engine = open_store(db_url)
    from cloud_sync.store import current_revision, head_revision

    assert current_revision(engine) == head_revision()
    engine.dispose()
