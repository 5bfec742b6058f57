"""How long retention holds SQLite's write lock: batched deletes against one big delete.

A temp SQLite store gets ``--rows`` telemetry rows (50 devices, one row a second of
``received_at``); one retention pass deletes all but the newest 1,000 in batches
(``Batches``, sized to ``retention.delete_batch_target_s``), and every write transaction
is timed from BEGIN to COMMIT. The table is then refilled and the same rows deleted
in one transaction, for comparison. A report only (wall time depends on the machine
and its load); the tests check the batching's structure with a fake clock.

    python -m benchmarks.retention_batches [--rows 60000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from benchmarks.results_file import write_section
from cloud_sync.config import Retention
from cloud_sync.store import apply_retention, insert_messages, message_row, open_store, transaction
from cloud_sync.store.schema import messages

KEPT = 1_000


class WriteTimer:
    """The length of every write transaction, from BEGIN to COMMIT (SQLite's write lock)."""

    def __init__(self, engine: Engine) -> None:
        self.lengths: list[float] = []
        self._start = 0.0
        sa.event.listen(engine, "begin", self._begin)
        sa.event.listen(engine, "commit", self._commit)

    def _begin(self, conn) -> None:
        self._start = time.perf_counter()

    def _commit(self, conn) -> None:
        if conn.get_execution_options().get("edgekit_write"):
            self.lengths.append(time.perf_counter() - self._start)

    def stop(self, engine: Engine) -> None:
        """Stop timing ``engine``'s transactions."""
        sa.event.remove(engine, "begin", self._begin)
        sa.event.remove(engine, "commit", self._commit)


def _telemetry(device: str, seq: int) -> dict:
    return {"v": 1, "device_id": device, "seq": seq, "ts": 1000.0 + seq,
            "model": {"name": "digits", "version": "3"}, "window_s": 10.0, "inferences": 120,
            "errors": 0, "latency_ms": {"p50": 1.5, "p95": 3.25, "p99": 4.0},
            "confidence": {"edges": [0, 0.5, 1], "counts": [3, 117], "mean": 0.93},
            "class_counts": {"3": 120}, "input_hist": None, "outbox": {}, "system": {}}


def fill(engine: Engine, first: int, n: int) -> None:
    """Rows ``first .. first + n - 1`` (seq and ``received_at``), 10,000 a transaction."""
    for start in range(first, first + n, 10_000):
        with transaction(engine) as conn:
            insert_messages(conn, [
                message_row("lab", "telemetry", _telemetry(f"pi-{s % 50}", s), float(s))
                for s in range(start, min(first + n, start + 10_000))])


def measure(engine: Engine, rows: int) -> dict[str, float | int]:
    """Time the batched retention pass, then one delete of as many rows."""
    fill(engine, 0, rows)
    batched = WriteTimer(engine)
    deleted = apply_retention(engine, Retention(telemetry_max_age_s=float(KEPT)),
                              now=float(rows))["messages"]
    batched.stop(engine)
    fill(engine, 0, rows - KEPT)
    single = WriteTimer(engine)
    with transaction(engine) as conn:
        conn.execute(sa.delete(messages).where(messages.c.received_at < float(rows - KEPT)))
    single.stop(engine)
    return {"rows_deleted": deleted, "transactions": len(batched.lengths),
            "longest_batch_ms": round(1000 * max(batched.lengths), 1),
            "median_batch_ms": round(1000 * sorted(batched.lengths)[len(batched.lengths) // 2], 1),
            "single_delete_ms": round(1000 * single.lengths[-1], 1)}


def main() -> None:
    """Print the measurements as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = open_store(f"sqlite:///{Path(folder) / 'edgekit.db'}")
        try:
            found = measure(engine, args.rows)
        finally:
            engine.dispose()
    print(json.dumps(found, indent=2))
    write_section("retention-batches", "\n".join([
        f"## Retention deletes in batches (benchmarks/retention_batches.py, SQLite, "
        f"{args.rows:,} rows)", "",
        "Time each write transaction holds SQLite's lock: the batched pass against one "
        "DELETE of as many rows (target: no pass holds the lock over ~100 ms).", "",
        "| rows deleted | transactions | longest batch | median batch | one DELETE |",
        "|---|---|---|---|---|",
        f"| {found['rows_deleted']:,} | {found['transactions']} | "
        f"{found['longest_batch_ms']} ms | {found['median_batch_ms']} ms | "
        f"{found['single_delete_ms']} ms |"]))


if __name__ == "__main__":
    main()
