"""PostgreSQL's day partitions of ``messages`` (migration 0009, ``store/partitions.py``):
rows land in their day, redeliveries still land once, retention drops whole days (and
leaves the default partition to the batched deletes), a day whose rows already sit in
the default partition is skipped, a drop that cannot get its lock waits for the next
pass, and the migration keeps existing rows and the id sequence both ways."""

from __future__ import annotations

import threading

import pytest

from cloud_sync.config import Retention
from cloud_sync.store import apply_retention, create_engine, head_revision, upgrade
from cloud_sync.store import partitions as p
from cloud_sync.store.writes import insert_messages

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
NOW = 1_796_000_000.0  # 2026-11-29 ~01:33 UTC
TODAY = p.day_of(NOW)


def _row(seq: int, ts: float, device: str = "pi-1") -> dict:
    return {"device_id": device, "fleet": "lab", "incarnation": "", "kind": "telemetry",
            "seq": seq, "ts": ts, "received_at": ts, "payload": {"seq": seq}}


def _where(conn, seq: int) -> str:
    return conn.exec_driver_sql(
        f"SELECT tableoid::regclass::text FROM messages WHERE seq = {seq}").scalar()


def _store(engine, *rows: dict) -> int:
    with engine.begin() as conn:
        return insert_messages(conn, list(rows))


def test_rows_land_in_their_day_and_a_redelivery_lands_once(engine):
    p.maintain(engine, 30 * p.DAY, NOW)
    assert _store(engine, _row(1, NOW), _row(2, NOW - 40 * p.DAY)) == 2
    assert _store(engine, _row(1, NOW), _row(3, NOW + p.DAY)) == 1  # seq 1 again: skipped
    with engine.connect() as conn:
        assert _where(conn, 1) == p.partition_name(TODAY)
        assert _where(conn, 2) == p.DEFAULT  # no partition for a day that long ago
        assert _where(conn, 3) == p.partition_name(TODAY + p.DAY)
        assert set(p.day_partitions(conn)) >= {TODAY + i * p.DAY for i in range(3)}


def test_retention_drops_whole_days_and_batches_the_rest(engine):
    p.maintain(engine, 30 * p.DAY, NOW)
    _store(engine, *(_row(i, NOW + i) for i in range(50)), _row(99, NOW - 40 * p.DAY))
    later = NOW + 31 * p.DAY  # today's partition is now wholly past the 30 days
    deleted = apply_retention(engine, Retention(telemetry_max_age_s=30 * p.DAY,
                                                telemetry_max_rows_per_device=10 ** 6), later)
    assert p.partition_name(TODAY) in deleted["partitions"]["dropped"]
    assert p.partition_name(p.day_of(later) + 2 * p.DAY) in deleted["partitions"]["created"]
    assert deleted["messages"] == 51  # 50 by the drop, the default partition's row batched
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM messages").scalar() == 0
        assert TODAY not in p.day_partitions(conn)


def test_a_day_already_in_the_default_partition_keeps_its_rows_there(engine):
    far = TODAY + 10 * p.DAY
    _store(engine, _row(1, far + 5))  # a clock ahead: the default partition takes it
    with engine.begin() as conn:
        assert p.create_day(conn, far) is False
    with engine.connect() as conn:
        assert _where(conn, 1) == p.DEFAULT
    assert _store(engine, _row(2, far + 6)) == 1


def test_a_drop_that_cannot_get_its_lock_waits_for_the_next_pass(engine):
    p.maintain(engine, 30 * p.DAY, NOW)
    _store(engine, _row(1, NOW))
    reading, release = threading.Event(), threading.Event()

    def reader():
        with engine.begin() as conn:  # a long dashboard query holds the day's lock
            conn.exec_driver_sql(f"SELECT count(*) FROM {p.partition_name(TODAY)}")
            reading.set()
            release.wait(30)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert reading.wait(10)
        blocked = p.maintain(engine, 30 * p.DAY, NOW + 31 * p.DAY)
        assert blocked.dropped == []
    finally:
        release.set()
        thread.join()
    done = p.maintain(engine, 30 * p.DAY, NOW + 31 * p.DAY)
    assert done.dropped == [p.partition_name(TODAY)] and done.rows_dropped == 1


def test_0009_keeps_rows_and_the_id_sequence_both_ways(db_url):
    from alembic import command

    from cloud_sync.store.migrate import alembic_config

    engine = create_engine(db_url)
    upgrade(engine, "0008")
    with engine.begin() as conn:
        for seq, ts in ((1, 1_000.0), (2, 2_000.0), (3, 90_000.0)):
            conn.exec_driver_sql(
                "INSERT INTO messages (device_id, fleet, incarnation, kind, seq, ts, "
                f"received_at, payload) VALUES ('pi-1', 'lab', '', 'telemetry', {seq}, {ts}, "
                f"{ts}, '{{}}')")
        top = conn.exec_driver_sql("SELECT max(id) FROM messages").scalar()
    assert upgrade(engine) == head_revision()
    with engine.connect() as conn:
        assert p.partitioned(conn)
        assert conn.exec_driver_sql("SELECT count(*) FROM messages").scalar() == 3
        assert _where(conn, 1) == p.DEFAULT  # 1970: past the migration's 400 days
    assert _store(engine, _row(4, NOW)) == 1
    with engine.connect() as conn:
        new_id = conn.exec_driver_sql("SELECT id FROM messages WHERE seq = 4").scalar()
        assert new_id > top
        command.downgrade(alembic_config(conn), "0008")
        conn.commit()
    with engine.connect() as conn:
        assert not p.partitioned(conn)
        assert conn.exec_driver_sql("SELECT count(*) FROM messages").scalar() == 4
    assert upgrade(engine) == head_revision()
    engine.dispose()
