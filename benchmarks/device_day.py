"""What one device-day costs the store: rows and bytes on SQLite and PostgreSQL.

A simulated device (``cloud_sync.sim``, the synthetic 3-channel, 10-class reference)
sends a day of telemetry at the default interval (``ingest.telemetry_interval_s``,
10 s: 8,640 windows of 200 inferences) and one connection's status pair; the messages
go through the ingest path (classify, ``write_batch``) into an empty store. Bytes are
the ``messages`` table with its indexes (and TOAST): on SQLite ``dbstat`` when the
build has it, else the file's growth after VACUUM; on PostgreSQL
``pg_total_relation_size`` after VACUUM, summed over ``messages`` and its day
partitions. Several devices are written and the result divided, so page slack is
amortised.

    python -m benchmarks.device_day [--devices 4] [--pg postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from benchmarks.results_file import write_section
from cloud_sync.config import CloudConfig
from cloud_sync.ingest.batch import write_batch
from cloud_sync.ingest.classify import Received, classify
from cloud_sync.sim.device import Model, SimDevice
from cloud_sync.sim.reference import Drift, shares, synthetic_reference
from cloud_sync.store import open_store, transaction

DAY = 86400.0
BATCH = 500


def _device_day(device_id: str, interval_s: float, start: float) -> list[tuple[str, bytes, float]]:
    ref = synthetic_reference()
    model = Model("sim-model", "1", ref, shares(ref), shares(ref, Drift()))
    dev = SimDevice(device_id, "lab", model, np.random.default_rng(7))
    dev.new_connection()
    out = [(dev.topic("status"), dev.status("online"), start)]
    for i in range(int(DAY / interval_s)):
        out.append((dev.topic("telemetry"), dev.telemetry(interval_s, 200), start + i * interval_s))
    out.append((dev.topic("status"), dev.status("offline", "shutdown"), start + DAY - 1))
    return out


def _write(engine, cfg: CloudConfig, items: list[tuple[str, bytes, float]]) -> None:
    for i in range(0, len(items), BATCH):
        chunk = items[i:i + BATCH]
        judged = [classify(Received(topic, payload, at)) for topic, payload, at in chunk]
        with transaction(engine) as conn:
            write_batch(conn, judged, cfg, chunk[-1][2])


def _sqlite_bytes(engine, path: Path) -> int:
    with engine.connect() as conn:
        try:
            return int(conn.exec_driver_sql(
                "SELECT sum(pgsize) FROM dbstat WHERE name = 'messages' OR name IN "
                "(SELECT name FROM sqlite_master WHERE tbl_name = 'messages')").scalar())
        except sa.exc.OperationalError:  # no dbstat in this build: the file's size
            conn.exec_driver_sql("VACUUM")
            return path.stat().st_size


def _pg_bytes(engine) -> int:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE messages")
        # a partitioned table (0009) holds nothing itself: sum it and its partitions
        return int(conn.exec_driver_sql(
            "SELECT sum(pg_total_relation_size(relid)) "
            "FROM pg_partition_tree('messages')").scalar())


def measure(url: str, devices: int, bytes_of) -> dict:
    """Write ``devices`` device-days into the store at ``url``; rows and bytes per device-day."""
    cfg = CloudConfig.from_dict({"data_dir": tempfile.mkdtemp()})
    engine = open_store(url)
    try:
        before = bytes_of(engine)
        payload = 0
        for d in range(devices):
            items = _device_day(f"dev-{d:03d}", cfg.ingest.telemetry_interval_s, 1.0e9)
            payload += sum(len(p) for _t, p, _a in items)
            _write(engine, cfg, items)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM messages")).scalar()
        grown = bytes_of(engine) - before
    finally:
        engine.dispose()
    return {"rows_per_device_day": rows / devices, "bytes_per_device_day": grown / devices,
            "bytes_per_row": grown / rows, "json_bytes_per_device_day": payload / devices}


def _pg_url(admin: str) -> tuple[str, Callable[[], None]]:
    schema = f"edgekit_day_{uuid.uuid4().hex[:8]}"
    admin_engine = sa.create_engine(admin)
    with admin_engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with admin_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin_engine.dispose()
    return f"{admin}?options=-csearch_path%3D{schema}", drop


def main() -> None:
    """Print the measurements as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--pg", help="a PostgreSQL URL (a schema is made and dropped in it)")
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp()) / "edgekit.db"
    found = {"sqlite": measure(f"sqlite:///{path}", args.devices,
                               lambda engine: _sqlite_bytes(engine, path))}
    if args.pg:
        url, drop = _pg_url(args.pg)
        try:
            found["postgresql"] = measure(url, args.devices, _pg_bytes)
        finally:
            drop()
    print(json.dumps(found, indent=2))
    write_section("device-day", _table(found, args.devices))


def _table(found: dict, devices: int) -> str:
    """The RESULTS.md section: one row per store."""
    lines = [f"## Storage per device-day (benchmarks/device_day.py, {devices} devices)", "",
             "A simulated device at the default 10 s telemetry interval, written through "
             "the ingest path; the `messages` table with its indexes.", "",
             "| store | rows | JSON received | stored | per row | 7 days (default) |",
             "|---|---|---|---|---|---|"]
    for store, f in found.items():
        lines.append(f"| {store} | {f['rows_per_device_day']:,.0f} | "
                     f"{f['json_bytes_per_device_day'] / 1e6:.1f} MB | "
                     f"{f['bytes_per_device_day'] / 1e6:.1f} MB | {f['bytes_per_row']:,.0f} B | "
                     f"{7 * f['bytes_per_device_day'] / 1e6:.0f} MB |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
