"""Retention: rows past their age, over their count or over their device's cap go; the rest
stay; every table that grows is covered; deletes run in short transactions whose size
follows how long the last one took."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from cloud_sync.config import CloudConfig, Retention
from cloud_sync.serve.jobs import Housekeeping
from cloud_sync.store import apply_retention, insert_messages, message_row, transaction
from cloud_sync.store.retention import Batches, RetentionJob
from cloud_sync.store.schema import (
    action_attempts,
    actions,
    devices,
    drift_scores,
    messages,
    quarantine,
    rollout_devices,
    rollout_events,
    rollouts,
    seq_heads,
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


def _heads(engine) -> set[tuple[str, str, str]]:
    h = seq_heads.c
    with engine.connect() as conn:
        return set(conn.execute(sa.select(h.device_id, h.incarnation, h.kind)).all())


def test_old_heads_of_incarnations_no_longer_followed_go(engine):
    """A lost outbox or a re-imaged device leaves a head per kind of its old incarnation;
    after the gaps' age those go, the followed incarnation's heads (and recent ones) stay."""
    with transaction(engine) as conn:
        conn.execute(sa.insert(devices).values(id="pi-1", fleet="lab", registered_by="auto",
                                               created_at=0.0, incarnation="new"))
        conn.execute(sa.insert(seq_heads), [
            {"device_id": d, "incarnation": i, "kind": k, "head": 5, "updated_at": at}
            for d, i, k, at in [
                ("pi-1", "new", "telemetry", 100.0),  # followed: stays however old
                ("pi-1", "new", "status", 100.0),
                ("pi-1", "newest", "telemetry", 4_500.0),  # recent: stays
                ("pi-1", "old", "telemetry", 100.0), ("pi-1", "old", "status", 100.0),
                ("pi-1", "", "telemetry", 100.0),  # before incarnations
                ("gone", "x", "telemetry", 100.0),  # no registry row left
                *[("pi-1", f"lost-{n}", "telemetry", 100.0 + n) for n in range(25)]]])
    retention = Retention(gaps_max_age_s=1_000.0, delete_batch_rows=10)  # batches of 10 keys
    deleted = apply_retention(engine, retention, now=5_000.0)
    assert _heads(engine) == {("pi-1", "new", "telemetry"), ("pi-1", "new", "status"),
                              ("pi-1", "newest", "telemetry")}
    assert deleted["seq_heads"] == 29
    assert apply_retention(engine, retention, now=5_000.0)["seq_heads"] == 0


class _RowsPerTransaction:
    """How many rows each write transaction deleted (those that deleted any)."""

    def __init__(self, engine) -> None:
        self.rows: list[int] = []
        self._now = 0
        sa.event.listen(engine, "begin", self._begin)
        sa.event.listen(engine, "after_cursor_execute", self._executed)
        sa.event.listen(engine, "commit", self._commit)

    def _begin(self, conn) -> None:
        self._now = 0

    def _executed(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            self._now += cursor.rowcount

    def _commit(self, conn) -> None:
        if conn.get_execution_options().get("edgekit_write") and self._now:
            self.rows.append(self._now)


class _ScriptedClock:
    """A clock under which the n-th delete transaction takes ``took[n]`` seconds (the
    last value for every later one): ``Batches`` reads it at each one's start and end."""

    def __init__(self, took: list[float]) -> None:
        self.took, self.now, self.reads = took, 0.0, 0

    def __call__(self) -> float:
        if self.reads % 2:  # the end of a transaction
            self.now += self.took[min(self.reads // 2, len(self.took) - 1)]
        self.reads += 1
        return self.now


def _fill(engine, n: int) -> None:
    for start in range(0, n, 10_000):
        with transaction(engine) as conn:
            insert_messages(conn, [message_row("lab", "telemetry", telemetry(f"pi-{s % 50}", s),
                                               received_at=float(s))
                                   for s in range(start, min(n, start + 10_000))])


def test_a_large_delete_runs_as_many_transactions_of_at_most_the_batch_size(engine):
    """Structure, not wall time (that is ``benchmarks/retention_batches.py``): with batches
    timed as quick, a 5,900-row delete is 31 transactions of at most 200 rows, so no
    single one holds SQLite's write lock for the whole delete."""
    _fill(engine, 6_000)
    per_transaction = _RowsPerTransaction(engine)
    job = RetentionJob(Retention(telemetry_max_age_s=100.0, delete_batch_rows=200),
                       clock=_ScriptedClock([0.0]))
    deleted = job(engine, now=6_000.0)
    assert deleted["messages"] == 5_900 and sum(per_transaction.rows) == 5_900
    assert max(per_transaction.rows) <= 200
    assert per_transaction.rows[:3] == [50, 100, 200]  # a quarter first, then doubling
    assert len(per_transaction.rows) == 31


def test_a_slow_batch_halves_the_next_and_a_quick_one_doubles_it(engine):
    _fill(engine, 1_000)
    per_transaction = _RowsPerTransaction(engine)
    batches = Batches(engine, max_rows=400, target_s=0.05,
                      clock=_ScriptedClock([0.2, 0.2, 0.03, 0.001]))  # slow, slow, on target
    column = messages.c.received_at
    assert batches.delete(messages, [column < 1_000.0], [column]) == 1_000
    assert per_transaction.rows == [100, 50, 25, 25, 50, 100, 200, 400, 50]
    assert batches.transactions == 9 and batches.longest_s == pytest.approx(0.2)


def test_retention_starts_afresh_whenever_this_process_regains_leadership(engine):
    """README: the first pass after a leader starts counts everything once. ``serve``
    builds its ``RetentionJob`` once; leading, then not, then again, the job must not
    carry its last pass over the time another instance may have led."""

    @dataclass
    class Recorded(RetentionJob):
        started_with: list = field(default_factory=list)

        def __call__(self, engine, now):
            self.started_with.append(self.last_pass)
            return super().__call__(engine, now)

    job, answers, stop = Recorded(Retention()), [True, False, True], threading.Event()

    def leading() -> bool:
        answer = answers.pop(0)
        if not answers:
            stop.set()  # the loop still runs the job it asked for, then ends
        return answer

    Housekeeping(CloudConfig(), engine, leading, [(0.0, job, "retention")]).run(stop)
    assert job.started_with == [None, None]  # not [None, <the first pass>]
