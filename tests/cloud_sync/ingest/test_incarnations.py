"""Outbox incarnations (protocol 1.2) in write_batch, on SQLite and PostgreSQL: a device
whose outbox was lost counts its seqs from 1 again under a new incarnation; its messages
are new rows, its gaps are its own, and its registry row follows it."""

from __future__ import annotations

import json

import sqlalchemy as sa

from cloud_sync.config import CloudConfig
from cloud_sync.ingest.batch import write_batch
from cloud_sync.ingest.classify import Received, classify
from cloud_sync.registry import get_device
from cloud_sync.store import transaction
from edge_agent.contracts.examples import example_messages
from tests.cloud_sync.ingest import messages as m

CFG = CloudConfig.from_dict({"data_dir": "/nonexistent"})
OLD, NEW = "0ld0ld0ld0ld0ld0", "4e3e3e3e3e3e3e3e"


def _write(engine, items, now=100.0):
    judged = [classify(Received(t, p, now)) for t, p in items]
    with transaction(engine) as conn:
        return write_batch(conn, judged, CFG, now).counts


def _rows(engine, sql):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).all()


def _telemetry(device, seqs, incarnation):
    return [(m.topic(device), m.telemetry(device, s, incarnation=incarnation)) for s in seqs]


def _status(device, seq, incarnation, state="online", version="3"):
    model = {"name": "digits", "version": version}
    return (m.topic(device, "status"), m.status(device, seq, state, incarnation=incarnation,
                                                model=model))


def _device(engine, device="pi-1"):
    """(state, model version) of the registry row."""
    return tuple(_rows(engine, f"SELECT state, model_version FROM devices "
                               f"WHERE id = '{device}'")[0])


def _followed(engine, device="pi-1"):
    """The incarnation the registry row follows."""
    with engine.connect() as conn:
        return get_device(conn, device).incarnation


def test_duplicates_are_judged_per_incarnation(engine):
    _write(engine, _telemetry("pi-1", [1, 2, 3], OLD))
    counts = _write(engine, [*_telemetry("pi-1", [1, 2, 2], NEW), *_telemetry("pi-1", [3], OLD),
                             (m.topic("pi-1", "samples"), m.sample("pi-1", 1, incarnation=OLD)),
                             (m.topic("pi-1", "samples"), m.sample("pi-1", 1, incarnation=NEW))])
    assert counts["accepted:telemetry"] == 2 and counts["duplicate"] == 2
    assert counts["accepted:samples"] == 2
    assert _rows(engine, "SELECT incarnation, seq FROM messages ORDER BY incarnation, seq") == [
        (OLD, 1), (OLD, 2), (OLD, 3), (NEW, 1), (NEW, 2)]
    assert _rows(engine, "SELECT incarnation, seq FROM samples ORDER BY incarnation") == [
        (OLD, 1), (NEW, 1)]


def test_gaps_and_heads_are_kept_per_incarnation(engine):
    _write(engine, _telemetry("pi-1", [1, 2, 5], OLD))
    counts = _write(engine, _telemetry("pi-1", [1, 3, 4], NEW))
    assert counts["accepted:telemetry"] == 3 and "gap_filled:telemetry" not in counts
    assert counts["gap_missing:telemetry"] == 1  # NEW's seq 2, not OLD's 3-4 "filled"
    assert _rows(engine, "SELECT incarnation, from_seq, to_seq FROM seq_gaps "
                         "ORDER BY incarnation") == [(OLD, 3, 4), (NEW, 2, 2)]
    assert _rows(engine, "SELECT incarnation, head FROM seq_heads WHERE kind = 'telemetry' "
                         "ORDER BY incarnation") == [(OLD, 5), (NEW, 4)]
    counts = _write(engine, _telemetry("pi-1", [3], OLD))
    assert counts["gap_filled:telemetry"] == 1
    assert _rows(engine, "SELECT incarnation, from_seq, to_seq FROM seq_gaps "
                         "ORDER BY incarnation") == [(OLD, 4, 4), (NEW, 2, 2)]


def test_the_registry_follows_the_newest_incarnation_whatever_its_seqs(engine):
    _write(engine, [_status("pi-1", 3 << 20, OLD, "online", "3")])
    assert _device(engine) == ("online", "3")
    _write(engine, [_status("pi-1", 1, NEW, "online", "1")])  # re-imaged: factory model
    assert _device(engine) == ("online", "1") and _followed(engine) == NEW
    _write(engine, [_status("pi-1", (4 << 20) - 1, OLD, "offline", "3")])  # the old last will
    assert _device(engine) == ("online", "1") and _followed(engine) == NEW
    _write(engine, [_status("pi-1", 2, NEW, "updating", "1")])
    assert _device(engine) == ("updating", "1") and _followed(engine) == NEW
    _write(engine, [_status("pi-1", 1, NEW, "offline", "1")])  # older within NEW: ignored
    assert _device(engine) == ("updating", "1") and _followed(engine) == NEW


def test_only_a_status_switches_the_row_to_a_new_incarnation(engine):
    _write(engine, [_status("pi-1", 3 << 20, OLD), *_telemetry("pi-1", [40], OLD)])
    _write(engine, [*_telemetry("pi-1", [1], NEW), _status("pi-1", (3 << 20) + 1, OLD,
                                                           "degraded")])
    assert _device(engine) == ("degraded", "3")  # NEW has said nothing of its state yet
    _write(engine, [_status("pi-1", 1, NEW, "online", "1")])  # though NEW's telemetry is known
    assert _device(engine) == ("online", "1") and _followed(engine) == NEW
    forged = example_messages()["cmd/result"]
    forged.device_id, forged.seq, forged.incarnation = "pi-1", 10 ** 9, "f0rged"
    counts = _write(engine, [(m.topic("pi-1", "cmd/result"), forged.to_json())])
    assert counts["accepted:cmd/result"] == 1 and _followed(engine) == NEW  # stored, no switch
    _write(engine, [_status("pi-1", 2, NEW, "updating", "1"),
                    _status("pi-1", (3 << 20) + 2, OLD, "offline", "3")])
    assert _device(engine) == ("updating", "1") and _followed(engine) == NEW


def test_of_two_new_incarnations_in_one_batch_the_last_received_is_followed(engine):
    _write(engine, [_status("pi-1", 5, OLD, "online", "3")])
    judged = [classify(Received(*_status("pi-1", 9, "aaa", "offline", "2"), 100.0)),
              classify(Received(*_status("pi-1", 1, "bbb", "online", "4"), 101.0))]
    with transaction(engine) as conn:
        write_batch(conn, judged, CFG, 101.0)
    assert _device(engine) == ("online", "4") and _followed(engine) == "bbb"


def test_messages_without_an_incarnation_still_ingest_as_the_legacy_one(engine):
    legacy = {**example_messages()["telemetry"].to_dict(), "v": "1.1", "device_id": "pi-1",
              "seq": 7}
    del legacy["incarnation"]
    status = {**example_messages()["status"].to_dict(), "v": "1.1", "device_id": "pi-1",
              "seq": 1 << 20}
    del status["incarnation"]
    counts = _write(engine, [(m.topic("pi-1"), json.dumps(legacy).encode()),
                             (m.topic("pi-1", "status"), json.dumps(status).encode())])
    assert counts["accepted:telemetry"] == 1 and counts["accepted:status"] == 1
    assert not [k for k in counts if k.startswith(("quarantined", "unknown_field"))]
    assert _rows(engine, "SELECT incarnation, seq FROM messages WHERE kind = 'telemetry'") == [
        ("", 7)]
    assert _device(engine) == ("online", "3") and _followed(engine) == ""
    counts = _write(engine, [*_telemetry("pi-1", [7], NEW),  # the upgraded agent's seq 7
                             _status("pi-1", 1, NEW, "online", "4")])
    assert counts["accepted:telemetry"] == 1 and "duplicate" not in counts
    assert _device(engine) == ("online", "4") and _followed(engine) == NEW
    _write(engine, [(m.topic("pi-1", "status"), json.dumps({**status, "seq": 2 << 20,
                                                             "state": "offline"}).encode())])
    assert _device(engine) == ("online", "4")  # a late legacy last will changes nothing
