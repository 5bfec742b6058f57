"""Fleet-sized IN lists run in chunks (issue 17 item 8): a rollout over more devices than a
statement may bind parameters for on PostgreSQL (65,535; SQLite builds vary) still reads its
devices, results and telemetry, on both stores."""

from __future__ import annotations

import sqlalchemy as sa

from cloud_sync.rollouts import health, progress
from cloud_sync.rollouts.store import _targets
from cloud_sync.store.chunks import chunked
from cloud_sync.store.schema import devices, messages

FLEET = 70_000  # above both stores' parameter limits


def _fleet(engine) -> list[str]:
    ids = [f"d{i:05d}" for i in range(FLEET)]
    with engine.begin() as conn:
        conn.execute(sa.insert(devices), [
            {"id": d, "fleet": "big", "state": "online", "registered_by": "cli",
             "created_at": 0.0} for d in ids])
        last = ids[-1]
        conn.execute(sa.insert(messages).values(
            device_id=last, kind="cmd/result", seq=1, ts=10.0, received_at=10.0,
            payload={"cmd_id": "c1", "ok": True}))
        conn.execute(sa.insert(messages), [
            {"device_id": last, "kind": "telemetry", "seq": 1, "ts": 20.0, "received_at": 20.0,
             "model_version": "2", "inferences": 5, "errors": 0, "latency_p95": 1.5,
             "payload": {"class_counts": {"3": 5}}}])
    return ids


def test_chunked_splits_and_keeps_every_value():
    assert list(chunked(range(5), size=2)) == [[0, 1], [2, 3], [4]]
    assert list(chunked([], size=2)) == []


def test_rollout_reads_over_a_fleet_beyond_the_parameter_limit(engine):
    ids = _fleet(engine)
    with engine.connect() as conn:
        assert len(_targets(conn, None, ids)) == FLEET
        assert len(progress._device_info(conn, ids)) == FLEET
        found = progress.results(conn, ids, since=0.0)
        assert [doc["ok"] for doc in found[(ids[-1], "c1")]] == [True]
        figures = health.figures(conn, ids, "2", 0.0, 100.0)
        assert (figures.devices, figures.inferences, figures.class_counts) == (1, 5, {"3": 5})
