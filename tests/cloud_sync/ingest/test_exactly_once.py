"""300 simulated devices plus a hostile publisher, through 2 worker processes: every valid
message stored exactly once, every bad one quarantined with its reason (SQLite, PostgreSQL)."""

from __future__ import annotations

import random
import threading

import pytest

from cloud_sync.serve.supervisor import WorkerSupervisor
from cloud_sync.sim import SimSettings, run_fleet
from tests.cloud_sync.ingest import messages as m
from tests.cloud_sync.ingest.conftest import count, wait_subscribed, wait_until

pytestmark = pytest.mark.slow
HOSTILE_DEVICES, SEQS = 5, 60


def _hostile_traffic() -> tuple[list[tuple[str, bytes]], dict[str, int]]:
    """Reordered seqs with duplicates for a few devices, and every malformed kind."""
    rng = random.Random(7)
    items, bad = [], {}
    for d in range(HOSTILE_DEVICES):
        device = f"hostile-{d}"
        seqs = list(range(SEQS)) + rng.sample(range(SEQS), 20)  # 20 duplicates each
        rng.shuffle(seqs)
        items += [(m.topic(device), m.telemetry(device, s)) for s in seqs]
        for reason, item in m.malformed(device).items():
            items.append(item)
            bad[reason] = bad.get(reason, 0) + 1
    rng.shuffle(items)
    return items, bad


def test_sim_fleet_and_hostile_publisher_exactly_once(engine, make_cfg, mqtt_broker, publisher):
    cfg = make_cfg(workers=2)
    workers = WorkerSupervisor(cfg, client_id_prefix="eo-test")
    workers.start()
    try:
        wait_subscribed(engine, publisher)
        items, bad = _hostile_traffic()
        sender = threading.Thread(target=publisher.send, args=(items,))
        sender.start()
        report = run_fleet(SimSettings(broker=mqtt_broker.url, fleet="sim", devices=300,
                                       interval_s=1.0, duration_s=3.0, processes=2,
                                       sample_chance=0.2))
        sender.join()
        assert report.connected == 300 and report.acked == report.to_dict()["published_total"]
        sim = report.published
        expected = {"telemetry": sim["telemetry"] + HOSTILE_DEVICES * SEQS,
                    "status": sim["status"], "samples": sim["samples"]}
        wait_until(lambda: _stored(engine) == expected, 60, f"{expected} stored")
        wait_until(lambda: count(engine, "SELECT count(*) FROM quarantine") == sum(bad.values()),
                   30, "every bad message quarantined")
    finally:
        workers.stop()
    assert _stored(engine) == expected
    for reason, n in bad.items():
        assert count(engine, f"SELECT count(*) FROM quarantine WHERE reason = '{reason}'") == n
        assert count(engine, "SELECT value FROM ingest_stats WHERE counter = "
                             f"'quarantined:{reason}'") == n
    assert count(engine, "SELECT value FROM ingest_stats WHERE counter = 'duplicate'") >= \
        HOSTILE_DEVICES * 20
    assert count(engine, "SELECT count(*) FROM seq_gaps") == 0  # reordering left no gap
    assert count(engine, "SELECT count(*) FROM devices WHERE fleet <> 'probe'") == \
        300 + HOSTILE_DEVICES
    # statuses order by seq: the newest stored status of every sim device is its 'stopped'
    # (the registry may revive a device from a message received after it; see batch._revive)
    states = _newest_status_states(engine)
    assert len(states) >= 290 and set(states.values()) == {"offline"}, \
        (len(states), set(states.values()))


def _stored(engine) -> dict[str, int]:
    out = {kind: count(engine, f"SELECT count(*) FROM messages WHERE kind = '{kind}' "
                               "AND fleet <> 'probe'")
           for kind in ("telemetry", "status")}
    out["samples"] = count(engine, "SELECT count(*) FROM samples")
    return out


def _newest_status_states(engine) -> dict[str, str]:
    """Each sim device's state in its newest stored status (statuses order by seq)."""
    import json

    import sqlalchemy as sa

    newest: dict[str, tuple[int, str]] = {}
    with engine.connect() as conn:
        for device, seq, payload in conn.execute(sa.text(
                "SELECT device_id, seq, payload FROM messages WHERE kind = 'status' AND "
                "fleet = 'sim'")):
            doc = json.loads(payload) if isinstance(payload, str) else payload
            if device not in newest or seq > newest[device][0]:
                newest[device] = (seq, doc["state"])
    return {device: state for device, (_seq, state) in newest.items()}
