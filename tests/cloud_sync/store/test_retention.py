"""Retention: rows past their age, over their count or over their device's cap go; the rest
stay; every table that grows is covered; deletes run in short transactions."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from cloud_sync.config import Retention
from cloud_sync.store import apply_retention, insert_messages, message_row, transaction
from cloud_sync.store.retention import RetentionJob
from cloud_sync.store.schema import (
    action_attempts,
    actions,
    drift_scores,
    messages,
    quarantine,
    rollout_devices,
    rollout_events,
    rollouts,
    triggers,
)
from tests.cloud_sync.store.test_writes import status, telemetry

DAY = 86400.0


def _seqs(engine, device: str | None = None, kind: str = "telemetry") -> list[int]:
    m = messages.c
    query = sa.select(m.seq).where(m.kind == kind).order_by(m.seq)
    if device is not None:
        query = query.where(m.device_id == device)
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def _telemetry(engine, device: str, seqs, received_at: float = 100.0, kind: str = "telemetry"):
    make = status if kind == "status" else telemetry
    with transaction(engine) as conn:
        insert_messages(conn, [message_row("lab", kind, make(device, s), received_at=received_at)
                               for s in seqs])


def test_old_rows_go_by_age(engine):
    with transaction(engine) as conn:
        insert_messages(conn, [message_row("lab", "telemetry", telemetry("pi-1", s),
                                           received_at=100.0 + s) for s in range(10)])
    deleted = apply_retention(engine, Retention(telemetry_max_age_s=5.0), now=110.0)
    assert deleted["messages"] == 5 and _seqs(engine) == [5, 6, 7, 8, 9]


def test_each_device_keeps_its_own_history_whatever_a_noisy_one_sends(engine):
    _telemetry(engine, "quiet", range(5))
    _telemetry(engine, "noisy", range(50))
    _telemetry(engine, "noisy", range(1, 40), kind="status")
    caps = Retention(telemetry_max_rows_per_device=10, status_max_rows_per_device=3)
    deleted = apply_retention(engine, caps, now=100.0)
    assert _seqs(engine, "quiet") == list(range(5))
    assert _seqs(engine, "noisy") == list(range(40, 50))  # the newest (by ts) of its own
    assert _seqs(engine, "noisy", "status") == [37, 38, 39]  # status has its own cap
    assert deleted["messages"] == 40 + 36
    assert apply_retention(engine, caps, now=100.0)["messages"] == 0


def test_a_later_pass_trims_a_device_that_got_noisy_since_the_last(engine):
    job = RetentionJob(Retention(telemetry_max_age_s=7200.0, telemetry_max_rows_per_device=100))
    _telemetry(engine, "pi-1", range(60), received_at=1000.0)
    assert job(engine, now=1000.0)["messages"] == 0
    _telemetry(engine, "pi-1", range(60, 120), received_at=1900.0)  # over its share of 1060 s
    assert job(engine, now=2000.0)["messages"] == 20
    assert _seqs(engine, "pi-1") == list(range(20, 120))
    _telemetry(engine, "pi-1", [120], received_at=2900.0)  # under its share, but it was
    assert job(engine, now=3000.0)["messages"] == 1  # trimmed within the age: still watched
    assert _seqs(engine, "pi-1") == list(range(21, 121))


def test_oldest_rows_go_over_the_count(engine):
    with transaction(engine) as conn:
        conn.execute(sa.insert(quarantine), [
            {"received_at": 50.0, "topic": "edgekit/lab/pi-1/telemetry", "reason": "bad_json",
             "payload": b"%d" % i, "payload_size": 1} for i in range(7)])
    apply_retention(engine, Retention(quarantine_max_rows=2), now=60.0)
    with engine.connect() as conn:
        assert conn.execute(sa.select(quarantine.c.payload).order_by(quarantine.c.id)
                            ).scalars().all() == [b"5", b"6"]
    assert apply_retention(engine, Retention(quarantine_max_rows=2), now=60.0)["quarantine"] == 0


def _score(window_end: float) -> dict:
    return {"scope": "device", "scope_key": "pi-1", "fleet": "lab", "device_id": "pi-1",
            "model_name": "digits", "model_version": "3", "kind": "input",
            "window_start": window_end - 600, "window_end": window_end, "inferences": 10,
            "verdict": "ok", "details": {}, "computed_at": window_end}


def test_drift_scores_go_by_age(engine):
    with transaction(engine) as conn:
        conn.execute(sa.insert(drift_scores), [_score(t) for t in (1000.0, 5000.0, 9000.0)])
    apply_retention(engine, Retention(drift_scores_max_age_s=5000.0), now=10_001.0)
    with engine.connect() as conn:
        assert conn.execute(sa.select(drift_scores.c.window_end)).scalars().all() == [9000.0]


def _trigger(conn, fired_at: float, action_state: str) -> int:
    tid = conn.execute(sa.insert(triggers).values(
        fleet="lab", model_name="digits", model_version="3", dedupe_key=f"k{fired_at}",
        fired_at=fired_at, window_end=fired_at, policy={}, evidence={}).returning(triggers.c.id)
    ).scalar()
    aid = conn.execute(sa.insert(actions).values(
        trigger_id=tid, idx=0, kind="mqtt", config={}, state=action_state, attempts=1,
        max_attempts=5, next_attempt_at=fired_at, updated_at=fired_at).returning(actions.c.id)
    ).scalar()
    conn.execute(sa.insert(action_attempts).values(action_id=aid, attempt=1, started_at=fired_at,
                                                   finished_at=fired_at, ok=True))
    return tid


def test_old_triggers_go_with_their_actions_and_attempts_unless_an_action_is_open(engine):
    with transaction(engine) as conn:
        done_old = _trigger(conn, 100.0, "done")
        open_old = _trigger(conn, 200.0, "pending")
        new = _trigger(conn, 9000.0, "failed")
    deleted = apply_retention(engine, Retention(triggers_max_age_s=1000.0), now=9500.0)
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(triggers.c.id)).scalars()) == {open_old, new}
        assert done_old not in set(conn.execute(sa.select(actions.c.trigger_id)).scalars())
    assert _count(engine, action_attempts) == 2
    assert (deleted["triggers"], deleted["actions"], deleted["action_attempts"]) == (1, 1, 1)


def _rollout(conn, state: str, updated_at: float) -> int:
    rid = conn.execute(sa.insert(rollouts).values(
        model_name="digits", model_version="3", fleet="lab", target={"fleet": "lab"}, policy={},
        state=state, phase_started_at=updated_at, created_at=updated_at,
        updated_at=updated_at).returning(rollouts.c.id)).scalar()
    conn.execute(sa.insert(rollout_devices).values(
        rollout_id=rid, device_id=f"pi-{rid}", wave=0, cmd_id=f"c{rid}", state="committed",
        updated_at=updated_at))
    conn.execute(sa.insert(rollout_events), [
        {"rollout_id": rid, "at": updated_at, "state": state, "message": "m"} for _ in range(3)])
    return rid


def test_finished_rollouts_go_by_age_with_their_devices_and_events(engine):
    with transaction(engine) as conn:
        _rollout(conn, "done", 100.0)
        old_open = _rollout(conn, "canary", 100.0)
        recent = _rollout(conn, "rolled_back", 9000.0)
    apply_retention(engine, Retention(rollouts_max_age_s=1000.0), now=9500.0)
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(rollouts.c.id)).scalars()) == {old_open, recent}
        assert set(conn.execute(sa.select(rollout_events.c.rollout_id)).scalars()) == \
            {old_open, recent}
    assert _count(engine, rollout_devices) == 2


class _WriteTimer:
    """The length of every write transaction, from BEGIN to COMMIT (SQLite's write lock)."""

    def __init__(self, engine) -> None:
        self.lengths: list[float] = []
        self._start = 0.0
        sa.event.listen(engine, "begin", self._begin)
        sa.event.listen(engine, "commit", self._commit)

    def _begin(self, conn) -> None:
        self._start = time.perf_counter()

    def _commit(self, conn) -> None:
        if conn.get_execution_options().get("edgekit_write"):
            self.lengths.append(time.perf_counter() - self._start)


def _fill(engine, n: int) -> None:
    for start in range(0, n, 10_000):
        with transaction(engine) as conn:
            insert_messages(conn, [message_row("lab", "telemetry", telemetry(f"pi-{s % 50}", s),
                                               received_at=float(s))
                                   for s in range(start, min(n, start + 10_000))])


def test_deletes_hold_the_write_lock_briefly_even_on_a_large_table(engine):
    _fill(engine, 60_000)
    timer = _WriteTimer(engine)
    deleted = apply_retention(engine, Retention(telemetry_max_age_s=100.0), now=59_100.0)
    assert deleted["messages"] == 59_000
    assert len(timer.lengths) > 5 and max(timer.lengths) < 0.1, timer.lengths
    assert deleted["longest_transaction_s"] < 0.1


def test_one_big_delete_would_hold_it_many_times_longer(engine):
    """The control for the test above: on SQLite (one writer: ingest waits for the lock)
    the same delete in one transaction holds the lock several times longer than the
    longest batch (about 140 ms against 20 ms here). PostgreSQL locks only the deleted
    rows, so there a long delete holds up nobody's inserts."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no database-wide write lock")
    _fill(engine, 60_000)
    batched = _WriteTimer(engine)
    apply_retention(engine, Retention(telemetry_max_age_s=100.0), now=59_100.0)
    sa.event.remove(engine, "commit", batched._commit)
    _fill(engine, 59_000)
    single = _WriteTimer(engine)
    with transaction(engine) as conn:
        conn.execute(sa.delete(messages).where(messages.c.received_at < 59_000.0))
    assert single.lengths[-1] > 3 * max(batched.lengths), (single.lengths, batched.lengths)
