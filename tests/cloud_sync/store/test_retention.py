"""Retention: rows past their age or over their count go; the rest stay."""

from __future__ import annotations

import sqlalchemy as sa

from cloud_sync.config import Retention
from cloud_sync.store import apply_retention, insert_messages, message_row, transaction
from cloud_sync.store.schema import messages, quarantine
from tests.cloud_sync.store.test_writes import telemetry


def _seqs(engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(messages.c.seq).order_by(messages.c.seq)).scalars())


def test_old_rows_go_by_age(engine):
    rows = [message_row("lab", "telemetry", telemetry("pi-1", s), received_at=100.0 + s)
            for s in range(10)]
    with transaction(engine) as conn:
        insert_messages(conn, rows)
        deleted = apply_retention(conn, Retention(telemetry_max_age_s=5.0), now=110.0)
    assert deleted["messages"] == 5 and _seqs(engine) == [5, 6, 7, 8, 9]


def test_oldest_rows_go_over_the_count(engine):
    rows = [message_row("lab", "telemetry", telemetry("pi-1", s), received_at=100.0)
            for s in range(10)]
    with transaction(engine) as conn:
        insert_messages(conn, rows)
        apply_retention(conn, Retention(telemetry_max_rows=3), now=100.0)
        assert apply_retention(conn, Retention(telemetry_max_rows=3), now=100.0) == dict.fromkeys(
            ("messages", "samples", "quarantine", "seq_gaps"), 0)
    assert _seqs(engine) == [7, 8, 9]


def test_quarantine_is_bounded(engine):
    with transaction(engine) as conn:
        conn.execute(sa.insert(quarantine), [
            {"received_at": 50.0, "topic": "edgekit/lab/pi-1/telemetry", "reason": "bad_json",
             "payload": b"{", "payload_size": 1} for _ in range(7)])
        apply_retention(conn, Retention(quarantine_max_rows=2), now=60.0)
        assert conn.execute(sa.select(sa.func.count()).select_from(quarantine)).scalar() == 2
