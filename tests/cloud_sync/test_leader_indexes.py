"""Every statement the leader's jobs run reads the tables that grow with the fleet through
an index (issue 21): a store is filled by the real controller steps (drift, triggers,
rollouts), then one pass of every leader job runs with each statement recorded, and
each is EXPLAINed. PostgreSQL plans with sequential scans, hash and merge joins off (the
fill's tables are small; a big table's plan joins by index lookups), so a sequential scan
left in a plan means no index can serve it, and an index scan must have an index
condition (walking a whole index is a scan too); SQLite's plan may not ``SCAN`` such a
table (``SEARCH ... USING INDEX`` or a covering-index scan are fine)."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import event

from cloud_sync.serve.jobs import action_jobs, housekeeping_jobs, rollout_jobs, trigger_jobs
from tests.cloud_sync.dashboard.fill import fill_store, trigger_cfg

# tables that grow with devices x time; the small ones (models, rollouts, ...) may be scanned
GROWING = ("messages", "samples", "devices", "drift_scores", "rollout_devices",
           "rollout_events", "seq_heads", "seq_gaps", "quarantine", "telemetry_windows",
           "fleet_windows")
# a count rule's cap-th newest row: a walk down the primary key from the top, as long as
# the cap (retention.*_max_rows), however large the fleet
CAP_ROW = re.compile(r"ORDER BY (\w+)\.id DESC\s+LIMIT \S+ OFFSET", re.S)
SQLITE_SCAN = re.compile(r"\bSCAN (\w+)(?! USING (COVERING )?INDEX)")


def _partition_of(name: str) -> str:
    return "messages" if re.fullmatch(r"messages_(p\d{8}|default)", name) else name


def _leader_statements(engine, cfg, now: float) -> list[tuple[str, object]]:
    """(statement, parameters) of one pass of every leader job, reads and writes."""
    seen: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, _context, many):
        head = statement.lstrip().split(None, 1)[0].upper()
        if head in ("SELECT", "UPDATE", "DELETE", "WITH") and not many:
            seen.append((statement, parameters))

    jobs = housekeeping_jobs(cfg) + trigger_jobs(cfg) + action_jobs(cfg) + rollout_jobs(cfg)
    event.listen(engine, "before_cursor_execute", record)
    try:
        for _interval, job, _name in jobs:
            job(engine, now)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def _leading_column(conn, index: str) -> str:
    return conn.exec_driver_sql(
        "SELECT a.attname FROM pg_class i JOIN pg_index x ON x.indexrelid = i.oid "
        "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0] "
        "WHERE i.relname = %(name)s AND pg_table_is_visible(i.oid)", {"name": index}).scalar()


def _pg_unindexed(conn, node: dict, heap: str | None = None) -> set[str]:
    """Relations a PostgreSQL plan (EXPLAIN FORMAT JSON) reads by a sequential scan, or by
    an index whose leading column the index condition does not bound (a whole-index walk).
    ``heap``: the table of a Bitmap Heap Scan, whose index scans are its children."""
    found = set()
    kind = node.get("Node Type", "")
    relation = node.get("Relation Name") or heap
    if kind in ("Index Scan", "Index Only Scan", "Bitmap Index Scan"):
        lead = _leading_column(conn, node["Index Name"])
        if relation and not re.search(rf"\b{lead}\b", node.get("Index Cond", "")):
            found.add(_partition_of(relation))
    elif relation and kind == "Seq Scan":
        found.add(_partition_of(relation))
    below = node.get("Relation Name") if kind == "Bitmap Heap Scan" else None
    for child in node.get("Plans", ()):
        found |= _pg_unindexed(conn, child, below)
    return found


def _scans(engine, statement: str, parameters) -> set[str]:
    """The growing tables a statement's plan reads without an index."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            for method in ("seqscan", "hashjoin", "mergejoin"):  # the plans of a big table
                conn.exec_driver_sql(f"SET LOCAL enable_{method} = off")
            plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement,
                                        parameters).scalar()
            found = _pg_unindexed(conn, plan[0]["Plan"])
        else:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            found = {m[0] for row in rows for m in SQLITE_SCAN.findall(str(row[-1]))}
        conn.rollback()
    return found & set(GROWING)


@pytest.mark.slow
def test_every_leader_statement_reads_growing_tables_through_an_index(engine, tmp_path):
    now = time.time()
    cfg = trigger_cfg(tmp_path, str(engine.url.render_as_string(hide_password=False)))
    fill_store(engine, cfg, now)  # small tables: SQLite without ANALYZE plans as for big ones
    statements = _leader_statements(engine, cfg, now + 5)
    assert len(statements) > 20  # the jobs did their work
    assert _scans(engine, "SELECT id FROM messages WHERE window_s > 1", {}) == {"messages"}
    offenders = {}
    for statement, parameters in statements:
        scanned = _scans(engine, statement, parameters)
        if scanned and not CAP_ROW.search(statement):
            offenders[" ".join(statement.split())[:160]] = sorted(scanned)
    assert offenders == {}, "\n".join(f"{k}: {v}" for k, v in offenders.items())
