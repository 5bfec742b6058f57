"""The per-device windows ingest keeps (``store.windows``), written by the real batch
writer on SQLite and PostgreSQL: one row per device window holding the sum of its new
messages (a redelivery never counts twice), a window that cannot be summed kept as an
error, the coverage per fleet and size, retention, and ``rebuild`` from the messages."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from cloud_sync.config import CloudConfig
from cloud_sync.drift import DriftError, aggregate
from cloud_sync.ingest.batch import write_batch
from cloud_sync.ingest.classify import Received, classify
from cloud_sync.store import apply_retention, transaction, windows
from cloud_sync.store.schema import telemetry_windows
from edge_agent import protocol
from tests.cloud_sync.ingest import messages as m

T0 = 1_700_000_040.0  # a multiple of 60


def _cfg(window_s: float = 60.0, **more) -> CloudConfig:
    return CloudConfig.from_dict({"data_dir": "/nonexistent",
                                  "triggers": {"default": {"window_s": window_s}}, **more})


def _payload(device: str, seq: int, ts: float, **over) -> tuple[str, bytes]:
    return m.topic(device), m.telemetry(device, seq, ts=ts, **over)


def _write(engine, items, cfg=None, now=T0 + 1000):
    judged = [classify(Received(t, p, now)) for t, p in items]
    with transaction(engine) as conn:
        return write_batch(conn, judged, cfg or _cfg(), now).counts


def _rows(engine) -> dict:
    with engine.connect() as conn:
        return {(r.device_id, r.window_start): r for r in conn.execute(
            sa.select(telemetry_windows).order_by(telemetry_windows.c.id))}


def _expected(items, device: str, start: float, end: float):
    msgs = [protocol.Telemetry.from_dict(json.loads(p)) for _, p in items]
    return aggregate([x for x in msgs if x.device_id == device], device, start, end)


@pytest.mark.parametrize("copy_from", [1, 10_000], ids=["copy", "executemany"])
def test_each_new_message_is_added_once_to_its_device_window(engine, copy_from, monkeypatch):
    from cloud_sync.store import writes

    monkeypatch.setattr(writes, "COPY_FROM_ROWS", copy_from)
    items = [_payload(d, s, T0 + 7 * s) for d in ("pi-1", "pi-2") for s in range(1, 13)]
    _write(engine, items[:10])
    _write(engine, items[5:])  # five redelivered, the rest new
    _write(engine, items[8:12])  # all redelivered
    rows = _rows(engine)
    assert sorted(rows) == [("pi-1", T0), ("pi-1", T0 + 60), ("pi-2", T0), ("pi-2", T0 + 60)]
    for (device, start), row in rows.items():
        want = _expected(items, device, start, start + 60)
        got = windows.counts_of(row)
        assert (row.messages, row.inferences) == (want.messages, want.inferences)
        assert got.input_counts.tolist() == want.input_counts.tolist()
        assert got.class_counts == want.class_counts
        assert got.confidence_sum == pytest.approx(want.confidence_sum)
        assert row.fleet == "lab" and row.window_s == 60.0


def test_a_window_that_cannot_be_summed_is_kept_as_an_error(engine):
    good = _payload("pi-1", 1, T0 + 1)
    doc = json.loads(good[1])
    doc["seq"], doc["input_hist"]["bin_edges"] = 2, [0.0, 0.2, 0.5, 0.75, 1.0]  # other bins
    _write(engine, [good, (good[0], json.dumps(doc).encode())])
    _write(engine, [_payload("pi-1", 3, T0 + 2)])  # stays an error, the batch is stored
    row = _rows(engine)[("pi-1", T0)]
    with pytest.raises(DriftError, match="different bins"):
        windows.counts_of(row)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM messages")).scalar() == 3


def test_coverage_starts_with_the_first_batch_and_restarts_with_another_size(engine):
    _write(engine, [_payload("pi-1", 1, T0 + 1)], now=T0 + 5)
    _write(engine, [_payload("pi-1", 2, T0 + 2)], now=T0 + 9)
    with engine.connect() as conn:
        assert windows.covered(conn) == {("lab", 60.0): T0 + 5}
    _write(engine, [_payload("pi-1", 3, T0 + 3)], cfg=_cfg(120.0), now=T0 + 20)
    with engine.connect() as conn:
        coverage = windows.covered(conn)
    assert coverage == {("lab", 120.0): T0 + 20}  # the old size, if it comes back, starts anew
    assert not windows.is_complete(coverage, "lab", 120.0, T0 + 20)
    assert windows.is_complete(coverage, "lab", 120.0, T0 + 20 + windows.FUTURE_MARGIN_S)


def test_retention_drops_windows_with_the_telemetry_age(engine):
    _write(engine, [_payload("pi-1", s, T0 + 60 * s) for s in range(5)])
    cfg = _cfg(retention={"telemetry_max_age_s": 86400})
    apply_retention(engine, cfg.retention, T0 + 86400 + 150)
    assert sorted(_rows(engine)) == [("pi-1", T0 + 180), ("pi-1", T0 + 240)]  # start < cutoff
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT window_start FROM fleet_windows")).scalars()) \
            == [T0 + 180, T0 + 240]


def test_rebuild_gives_what_ingest_kept(engine):
    items = [_payload(d, s, T0 + 11 * s) for d in ("pi-1", "pi-2") for s in range(1, 30)]
    _write(engine, items)
    kept = {k: (r.messages, r.counts) for k, r in _rows(engine).items()}
    with transaction(engine) as conn:
        conn.execute(sa.delete(telemetry_windows))
    written = windows.rebuild(engine, lambda fleet: 60.0, T0, T0 + 3600, now=T0 + 2000,
                              chunk_s=90.0)  # chunks that cut windows in two
    assert written >= len(kept)
    rebuilt = {k: (r.messages, r.counts) for k, r in _rows(engine).items()}
    assert rebuilt.keys() == kept.keys()
    for key, (count, doc) in kept.items():
        assert rebuilt[key][0] == count
        assert rebuilt[key][1]["input_counts"] == doc["input_counts"]
        assert rebuilt[key][1]["confidence_sum"] == pytest.approx(doc["confidence_sum"])
