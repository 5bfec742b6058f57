"""Unknown-field counters stay the top N plus ``unknown_field:other``, however many keys
devices invent, at ingest and after retention; their sum is kept exact."""

from __future__ import annotations

import json

import sqlalchemy as sa

from cloud_sync.config import CloudConfig, Retention
from cloud_sync.ingest.batch import write_batch
from cloud_sync.ingest.classify import Received, classify
from cloud_sync.store import apply_retention, bump_counters, read_counters, transaction
from cloud_sync.store.unknown_fields import OTHER
from tests.cloud_sync.ingest import messages as m

CFG = CloudConfig.from_dict({"data_dir": "/nonexistent",
                             "retention": {"unknown_field_counters": 5}})


def _unknown(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {k: v for k, v in read_counters(conn).items() if k.startswith("unknown_field:")}


def _write(engine, payloads, now=100.0):
    judged = [classify(Received(m.topic("pi-1"), p, now)) for p in payloads]
    with transaction(engine) as conn:
        return write_batch(conn, judged, CFG, now).counts


def test_ingest_counts_at_most_n_fields_by_name_and_the_rest_as_other(engine):
    invented = [m.telemetry("pi-1", s, v="1.7", **{f"key{s}": 1, "gpu": 1}) for s in range(20)]
    _write(engine, invented[:10])
    _write(engine, invented[10:])
    counts = _unknown(engine)
    assert len(counts) == 6 and OTHER in counts  # 5 by name + other
    assert counts["unknown_field:telemetry:gpu"] == 20  # the most frequent got a row first
    assert sum(counts.values()) == 40  # nothing lost: every field seen is counted once


def test_a_message_with_thousands_of_new_keys_adds_one_row(engine):
    doc = json.loads(m.telemetry("pi-1", 1, v="1.7"))
    doc.update({f"k{i}": i for i in range(5000)})
    _write(engine, [json.dumps(doc).encode()])
    counts = _unknown(engine)
    assert len(counts) == 6 and sum(counts.values()) == 5000


def test_retention_folds_counters_over_the_cap_into_other(engine):
    with transaction(engine) as conn:  # e.g. written before the cap, or by racing workers
        bump_counters(conn, {f"unknown_field:telemetry:k{i}": i + 1 for i in range(12)}, 50.0)
        bump_counters(conn, {OTHER: 4, "accepted:telemetry": 7}, 50.0)
    apply_retention(engine, Retention(unknown_field_counters=3), now=100.0)
    counts = _unknown(engine)
    assert set(counts) == {"unknown_field:telemetry:k11", "unknown_field:telemetry:k10",
                           "unknown_field:telemetry:k9", OTHER}  # the top 3 by count
    assert counts[OTHER] == 4 + sum(range(1, 10))
    with engine.connect() as conn:
        assert read_counters(conn)["accepted:telemetry"] == 7
        assert conn.execute(sa.text("SELECT count(*) FROM ingest_stats")).scalar() == 5
