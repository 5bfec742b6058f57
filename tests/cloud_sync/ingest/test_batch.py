"""write_batch on SQLite and PostgreSQL: idempotent rows, gaps, registry, quarantine, counters."""

from __future__ import annotations

import sqlalchemy as sa

from cloud_sync.config import CloudConfig
from cloud_sync.ingest.batch import write_batch
from cloud_sync.ingest.classify import Received, classify
from cloud_sync.ingest.worker import write_resilient
from cloud_sync.registry import add_device, get_device
from cloud_sync.store import read_counters, transaction
from tests.cloud_sync.ingest import messages as m

CFG = CloudConfig.from_dict({"data_dir": "/nonexistent"})


def _write(engine, items, cfg=CFG, now=100.0):
    judged = [classify(Received(t, p, now)) for t, p in items]
    with transaction(engine) as conn:
        return write_batch(conn, judged, cfg, now).counts


def _rows(engine, sql):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).all()


def _telemetry(device, seqs):
    return [(m.topic(device), m.telemetry(device, s)) for s in seqs]


def test_duplicates_in_and_across_batches_are_stored_once(engine):
    first = _write(engine, _telemetry("pi-1", [1, 2, 2, 3]))
    again = _write(engine, _telemetry("pi-1", [3, 4]))
    assert first["accepted:telemetry"] == 3 and first["duplicate"] == 1
    assert again["accepted:telemetry"] == 1 and again["duplicate"] == 1
    assert _rows(engine, "SELECT seq FROM messages ORDER BY seq") == [(1,), (2,), (3,), (4,)]
    with engine.connect() as conn:
        assert read_counters(conn)["accepted:telemetry"] == 4


def test_gaps_are_recorded_and_late_seqs_close_them(engine):
    _write(engine, _telemetry("pi-1", [0, 1, 5, 9]))
    assert _rows(engine, "SELECT from_seq, to_seq FROM seq_gaps ORDER BY from_seq") == \
        [(2, 4), (6, 8)]
    counts = _write(engine, _telemetry("pi-1", [3, 7, 8, 1]))
    assert counts["gap_filled:telemetry"] == 3
    assert _rows(engine, "SELECT from_seq, to_seq FROM seq_gaps ORDER BY from_seq") == \
        [(2, 2), (4, 4), (6, 6)]
    assert _rows(engine, "SELECT head FROM seq_heads WHERE kind = 'telemetry'") == [(9,)]


def test_status_is_ordered_by_seq_and_never_gap_checked(engine):
    _write(engine, [(m.topic("pi-1", "status"), m.status("pi-1", 1 << 20, "online")),
                    (m.topic("pi-1", "status"), m.status("pi-1", (2 << 20) - 1, "offline"))])
    assert _rows(engine, "SELECT state FROM devices") == [("offline",)]
    _write(engine, [(m.topic("pi-1", "status"), m.status("pi-1", 1 << 20 | 5, "degraded"))])
    assert _rows(engine, "SELECT state FROM devices") == [("offline",)]  # older: not applied
    _write(engine, [(m.topic("pi-1", "status"), m.status("pi-1", 2 << 20, "online"))])
    assert _rows(engine, "SELECT state, model_name FROM devices") == [("online", "digits")]
    assert _rows(engine, "SELECT count(*) FROM seq_gaps") == [(0,)]


def test_devices_auto_register_and_samples_keep_prediction_and_reason(engine):
    _write(engine, [*_telemetry("pi-1", [1]), (m.topic("pi-2", "samples"), m.sample("pi-2", 1))])
    with engine.connect() as conn:
        device = get_device(conn, "pi-2")
    assert (device.fleet, device.registered_by, device.state) == ("lab", "auto", "online")
    assert _rows(engine, "SELECT reason, pred_class, pred_confidence FROM samples") == \
        [("low_confidence", 7, 0.41)]


def test_bad_messages_are_quarantined_with_their_reason(engine):
    counts = _write(engine, list(m.malformed("pi-1").values()))
    reasons = sorted(r for (r,) in _rows(engine, "SELECT reason FROM quarantine"))
    assert reasons == sorted(m.malformed("pi-1"))
    assert all(counts[f"quarantined:{r}"] == 1 for r in reasons)
    sizes = dict(_rows(engine, "SELECT reason, payload_size FROM quarantine"))
    assert sizes["oversize"] > 1 << 20  # the size is kept, the payload truncated


def test_closed_registration_and_wrong_fleet_are_quarantined(engine):
    with transaction(engine) as conn:
        add_device(conn, "pi-1", "lab")
        add_device(conn, "pi-9", "other")
    cfg = CloudConfig.from_dict({"data_dir": "/nonexistent",
                                 "ingest": {"registration_open": False}})
    counts = _write(engine, [*_telemetry("pi-1", [1]), *_telemetry("stranger", [1]),
                             *_telemetry("pi-9", [1])], cfg)
    assert counts == {"accepted:telemetry": 1, "quarantined:unknown_device": 1,
                      "quarantined:fleet_mismatch": 1}


def test_quarantine_is_capped_oldest_first(engine):
    cfg = CloudConfig.from_dict({"data_dir": "/x", "retention": {"quarantine_max_rows": 3}})
    for i in range(5):
        _write(engine, [(m.topic("pi-1"), b"bad %d" % i)], cfg)
    assert _rows(engine, "SELECT payload FROM quarantine ORDER BY id") == \
        [(b"bad 2",), (b"bad 3",), (b"bad 4",)]


def test_unknown_fields_of_a_newer_minor_are_counted(engine):
    counts = _write(engine, [(m.topic("pi-1"), m.telemetry("pi-1", 1, v="1.7", gpu=1))])
    assert counts["unknown_field:telemetry:gpu"] == 1 and counts["accepted:telemetry"] == 1


def test_a_message_the_store_refuses_is_quarantined_alone(engine, monkeypatch):
    from cloud_sync.ingest import batch

    real = batch.ROW_WRITERS["telemetry"]

    def picky(conn, group, writing):
        if any(a.seq == 13 for a in group):
            raise ValueError("unlucky seq")
        return real(conn, group, writing)

    monkeypatch.setitem(batch.ROW_WRITERS, "telemetry", picky)
    judged = [classify(Received(t, p, 1.0)) for t, p in _telemetry("pi-1", range(10, 20))]
    counts = write_resilient(engine, judged, CFG)
    assert counts["accepted:telemetry"] == 9 and counts["quarantined:store_error"] == 1
    assert _rows(engine, "SELECT reason, detail FROM quarantine") == \
        [("store_error", "unlucky seq")]
