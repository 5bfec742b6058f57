"""Batch writes: idempotent on the unique keys (at-least-once delivery), counters, rows."""

from __future__ import annotations

import base64

import sqlalchemy as sa

from cloud_sync.store import (
    bump_counters,
    insert_messages,
    insert_samples,
    message_row,
    read_counters,
    sample_row,
    transaction,
)
from cloud_sync.store.schema import messages, samples


def telemetry(device: str, seq: int, **over) -> dict:
    doc = {"v": 1, "device_id": device, "seq": seq, "ts": 1000.0 + seq,
           "model": {"name": "digits", "version": "3"}, "window_s": 10.0, "inferences": 120,
           "errors": 1, "latency_ms": {"p50": 1.5, "p95": 3.25, "p99": 4.0},
           "confidence": {"edges": [0, 0.5, 1], "counts": [3, 117], "mean": 0.93},
           "class_counts": {"3": 120}, "input_hist": None, "outbox": {}, "system": {}}
    return dict(doc, **over)


def sample(device: str, seq: int) -> dict:
    data = base64.b64encode(bytes(range(16))).decode()
    return {"v": 1, "device_id": device, "seq": seq, "ts": 2000.0 + seq,
            "model": {"name": "digits", "version": "3"}, "reason": "low_confidence",
            "prediction": {"class": 7, "confidence": 0.31},
            "input": {"dtype": "uint8", "shape": [1, 4, 4], "data": data}}


def status(device: str, seq: int) -> dict:
    return {"v": 1, "device_id": device, "seq": seq, "ts": 1000.0 + seq, "state": "online"}


def _rows(device: str, seqs, kind: str = "telemetry") -> list[dict]:
    make = status if kind == "status" else telemetry
    return [message_row("lab", kind, make(device, s), received_at=5000.0) for s in seqs]


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_insert_messages_skips_redeliveries(engine):
    with transaction(engine) as conn:
        assert insert_messages(conn, _rows("pi-1", range(10))) == 10
    with transaction(engine) as conn:  # redelivered batch, half of it new
        assert insert_messages(conn, _rows("pi-1", range(5, 15))) == 5
    assert _count(engine, messages) == 15


def test_duplicates_inside_one_batch_count_once(engine):
    with transaction(engine) as conn:
        assert insert_messages(conn, _rows("pi-1", [1, 1, 2, 2, 2])) == 2


def test_key_is_device_kind_and_seq(engine):
    rows = _rows("pi-1", [1]) + _rows("pi-2", [1]) + _rows("pi-1", [1], kind="status")
    with transaction(engine) as conn:
        assert insert_messages(conn, rows) == 3
        assert insert_messages(conn, []) == 0


def test_two_batches_in_one_transaction(engine):
    with transaction(engine) as conn:
        assert insert_messages(conn, _rows("pi-1", range(3))) == 3
        assert insert_messages(conn, _rows("pi-1", range(6))) == 3


def test_a_rolled_back_batch_leaves_nothing(engine):
    try:
        with transaction(engine) as conn:
            insert_messages(conn, _rows("pi-1", range(3)))
            raise RuntimeError("worker died before commit")
    except RuntimeError:
        pass
    assert _count(engine, messages) == 0


def test_telemetry_figures_land_in_their_columns(engine):
    with transaction(engine) as conn:
        insert_messages(conn, _rows("pi-1", [4]))
    with engine.connect() as conn:
        row = conn.execute(sa.select(messages)).one()._mapping
    assert (row["device_id"], row["fleet"], row["kind"], row["seq"]) == ("pi-1", "lab",
                                                                         "telemetry", 4)
    assert (row["model_name"], row["model_version"]) == ("digits", "3")
    assert (row["inferences"], row["errors"], row["window_s"]) == (120, 1, 10.0)
    assert (row["latency_p50"], row["latency_p95"], row["latency_p99"]) == (1.5, 3.25, 4.0)
    assert row["confidence_mean"] == 0.93 and row["ts"] == 1004.0
    assert row["payload"]["class_counts"] == {"3": 120}


def test_rows_come_from_the_typed_message_and_unknown_figures_are_null():
    row = message_row("lab", "telemetry", telemetry("pi-1", 1, latency_ms={"p50": None},
                                                    confidence={"edges": [0.0, 1.0], "counts": [0],
                                                                "mean": None}), 1.0)
    assert row["latency_p50"] is None and row["confidence_mean"] is None
    assert row["inferences"] == 120 and row["payload"]["latency_ms"]["p50"] is None
    status = message_row("lab", "status", {"v": "1.1", "device_id": "pi-1", "seq": 1, "ts": 1.0,
                                           "state": "online", "model": None}, 1.0)
    assert status["model_name"] is None and status["latency_p95"] is None


def test_a_malformed_document_never_becomes_a_row():
    import pytest

    from edge_agent.errors import ProtocolError

    with pytest.raises(ProtocolError, match="inferences"):
        message_row("lab", "telemetry", telemetry("pi-1", 1, inferences=True), 1.0)


def test_insert_samples_is_idempotent_and_keeps_the_input_bytes(engine):
    rows = [sample_row("lab", sample("pi-1", s), received_at=9.0) for s in (1, 2, 2)]
    with transaction(engine) as conn:
        assert insert_samples(conn, rows) == 2
        assert insert_samples(conn, rows) == 0
    with engine.connect() as conn:
        row = conn.execute(sa.select(samples).where(samples.c.seq == 1)).one()._mapping
    assert row["input_data"] == bytes(range(16)) and row["input_shape"] == [1, 4, 4]
    assert (row["pred_class"], row["pred_confidence"], row["reason"]) == (7, 0.31,
                                                                          "low_confidence")
    assert "data" not in row["payload"]["input"]


def test_counters_add_up(engine):
    with transaction(engine) as conn:
        bump_counters(conn, {"accepted": 3, "quarantined:bad_json": 1}, now=1.0)
    with transaction(engine) as conn:
        bump_counters(conn, {"accepted": 2, "duplicate": 4}, now=2.0)
        bump_counters(conn, {}, now=3.0)
    with engine.connect() as conn:
        assert read_counters(conn) == {"accepted": 5, "duplicate": 4, "quarantined:bad_json": 1}
