"""The silence rule (``serve/jobs.mark_silent``, every few seconds on the leader) reads
the devices table through ``ix_devices_state_last_seen``, not by scanning every device:
the statements it really runs are EXPLAINed on SQLite and PostgreSQL (issue 17, item 8)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event

from cloud_sync.config import CloudConfig
from cloud_sync.serve.jobs import mark_silent
from cloud_sync.store import transaction
from cloud_sync.store.schema import devices

INDEX = "ix_devices_state_last_seen"
NOW = 1_000_000.0


def _fleet(engine, n: int = 5000) -> None:
    """A fleet as it mostly is: nearly every device online and heard from just now, some
    offline for long, a few just gone quiet."""
    def state(i: int) -> tuple[str, float]:
        if i % 50 == 0:
            return "offline", NOW - 86_400
        if i % 97 == 0:
            return "online", NOW - 60
        return "online", NOW - 1
    with transaction(engine) as conn:
        conn.execute(sa.insert(devices), [
            {"id": f"dev-{i:05d}", "fleet": "f1", "state": state(i)[0], "registered_by": "cli",
             "created_at": 0.0, "last_seen": state(i)[1]} for i in range(n)])
    with engine.connect() as conn:  # statistics, as autovacuum / a real fleet would have
        conn.exec_driver_sql("ANALYZE")
        conn.commit()


def _statements(engine, cfg) -> list[tuple[str, object]]:
    """The statements ``mark_silent`` finds its devices with (it locks them in id order,
    then updates them by id), with their parameters."""
    seen: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many):
        if "last_seen" in statement and "FROM devices" in statement:
            seen.append((statement, parameters))
    event.listen(engine, "before_cursor_execute", record)
    try:
        with transaction(engine) as conn:
            changed = mark_silent(conn, cfg, NOW)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert changed["stale"] > 0 and changed["offline"] == 0, changed  # it did its work
    return seen


def _plan(engine, statement: str, parameters) -> str:
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, parameters).all()
        conn.rollback()
    return "\n".join(" ".join(str(v) for v in row) for row in rows)


def test_the_silence_rule_reads_devices_through_its_index(engine, tmp_path):
    _fleet(engine)
    cfg = CloudConfig(data_dir=tmp_path, db=str(engine.url))
    statements = _statements(engine, cfg)
    assert len(statements) == 2  # offline, then stale
    if engine.dialect.name == "postgresql":
        assert all("FOR UPDATE" in s for s, _ in statements)
    for statement, parameters in statements:
        plan = _plan(engine, statement, parameters)
        assert INDEX in plan, plan
        assert "SCAN devices" not in plan and "Seq Scan" not in plan, plan
