"""The durable outbox: seqs, order, acks, caps with exact drop counters, threads, bad files."""

from __future__ import annotations

import sqlite3
import threading
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edge_agent.outbox as outbox_module
from edge_agent.errors import EdgekitError
from edge_agent.outbox import Outbox, OutboxError, OutboxStats
from tests.brokers import message, seq_of


def put(box: Outbox, kind: str = "telemetry", size: int = 0, retain: bool = False) -> int:
    return box.put(kind, f"t/dev/{kind}", lambda seq: message(seq, size), retain=retain)


class FakeClock:
    """Stands in for the outbox module's ``time`` so ages can be tested without waiting."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(outbox_module, "time", types.SimpleNamespace(time=fake.time))
    return fake


def test_seq_is_monotonic_per_kind_and_survives_reopen(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    assert [put(box) for _ in range(3)] == [1, 2, 3]
    assert [put(box, "samples") for _ in range(2)] == [1, 2]
    assert box.allocate_seq("status") == 1
    box.close()
    box = Outbox(tmp_path / "o.sqlite")
    assert put(box) == 4
    assert put(box, "samples") == 3
    assert box.allocate_seq("status") == 2
    box.close()


def test_a_new_file_is_a_new_incarnation_and_it_survives_reopen(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    first = box.incarnation
    assert len(first) == 16 and int(first, 16) >= 0
    box.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert again.incarnation == first
    again.close()
    (tmp_path / "o.sqlite").unlink()  # lost or moved away: seqs start at 1 again...
    fresh = Outbox(tmp_path / "o.sqlite")
    assert put(fresh) == 1 and fresh.incarnation != first  # ...under a new incarnation
    assert Outbox(tmp_path / "other.sqlite").incarnation not in (first, fresh.incarnation)


def test_an_outbox_of_the_previous_schema_gets_an_incarnation_and_keeps_its_seqs(tmp_path):
    db = sqlite3.connect(tmp_path / "o.sqlite")
    db.executescript("CREATE TABLE seqs (kind TEXT PRIMARY KEY, last INTEGER NOT NULL);"
                     "INSERT INTO seqs VALUES ('telemetry', 41); PRAGMA user_version = 2;")
    db.close()
    box = Outbox(tmp_path / "o.sqlite")
    assert put(box) == 42 and len(box.incarnation) == 16
    assert box.query("PRAGMA user_version") == [(2,)]


def test_the_incarnation_table_keeps_schema_version_2_so_an_older_agent_opens_the_file(
        tmp_path):
    # An agent of before the incarnation (schema 2) refuses a file stamped newer than 2,
    # and the operator's way out (moving the file away) loses what it holds. The identity
    # table is additive, so a file this agent writes must still read as version 2.
    box = Outbox(tmp_path / "o.sqlite")
    assert put(box) == 1
    first = box.incarnation
    box.close()
    db = sqlite3.connect(tmp_path / "o.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2  # what an older agent checks
    db.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert again.incarnation == first and put(again) == 2
    assert again.query("PRAGMA user_version") == [(2,)]
    again.close()


def test_a_file_an_interim_build_stamped_3_opens_and_keeps_its_incarnation(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    assert put(box) == 1
    first = box.incarnation
    box.close()
    db = sqlite3.connect(tmp_path / "o.sqlite")
    db.execute("PRAGMA user_version = 3")  # what the build that bumped the version wrote
    db.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert again.incarnation == first and put(again) == 2
    assert again.query("PRAGMA user_version") == [(2,)]
    again.close()


def test_seq_is_never_reused_after_ack(outbox):
    seqs = [put(outbox) for _ in range(3)]
    for row in outbox.pending(10):
        outbox.ack(row.id)
    assert put(outbox) == seqs[-1] + 1
    assert [seq_of(r.payload) for r in outbox.pending(10)] == [4]


def test_build_gets_the_seq_and_a_failing_build_stores_nothing(outbox):
    assert outbox.put("telemetry", "t", lambda seq: f"seq={seq}".encode()) == 1

    def broken(seq: int) -> bytes:
        raise ValueError("cannot build")

    with pytest.raises(ValueError):
        outbox.put("telemetry", "t", broken)
    assert outbox.put("telemetry", "t", lambda seq: f"seq={seq}".encode()) == 2
    assert [r.payload for r in outbox.pending(10)] == [b"seq=1", b"seq=2"]


def test_build_may_read_the_outbox_stats(outbox):
    put(outbox)
    seq = outbox.put("telemetry", "t", lambda s: str(outbox.stats().queued).encode())
    assert seq == 2 and outbox.pending(10)[-1].payload == b"1"


def test_pending_is_oldest_first_with_cursor_and_ack_is_idempotent(outbox):
    for kind in ("telemetry", "samples", "telemetry", "cmd/result"):
        put(outbox, kind, retain=kind == "samples")
    rows = outbox.pending(10)
    assert [(r.kind, seq_of(r.payload)) for r in rows] == [
        ("telemetry", 1), ("samples", 1), ("telemetry", 2), ("cmd/result", 1)]
    assert [r.retain for r in rows] == [False, True, False, False]
    assert rows[1].topic == "t/dev/samples" and rows[0].created <= rows[-1].created
    assert [r.id for r in outbox.pending(2)] == [rows[0].id, rows[1].id]
    assert [r.id for r in outbox.pending(10, after_id=rows[1].id)] == [rows[2].id, rows[3].id]
    outbox.ack(rows[0].id)
    outbox.ack(rows[0].id)
    outbox.ack_many([rows[2].id, 999_999])
    assert [r.id for r in outbox.pending(10)] == [rows[1].id, rows[3].id]
    stats = outbox.stats()
    assert (stats.queued, stats.queued_bytes) == (2, len(rows[1].payload) + len(rows[3].payload))


def test_max_bytes_drops_oldest_with_exact_counters_that_persist(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", max_bytes=1000)
    for _ in range(25):
        put(box, size=100)
    assert [seq_of(r.payload) for r in box.pending(100)] == list(range(16, 26))
    expected = OutboxStats(queued=10, queued_bytes=1000, dropped=15, dropped_bytes=1500,
                           oldest_age_s=0.0)
    assert _without_age(box.stats()) == _without_age(expected)
    box.close()
    box = Outbox(tmp_path / "o.sqlite", max_bytes=1000)
    assert _without_age(box.stats()) == _without_age(expected)
    put(box, size=300)  # must push out three 100-byte messages, no more
    assert (box.stats().dropped, box.stats().dropped_bytes, box.stats().queued) == (18, 1800, 8)
    box.close()


def _without_age(stats: OutboxStats) -> tuple:
    return stats.queued, stats.queued_bytes, stats.dropped, stats.dropped_bytes


def test_max_age_drops_old_messages_and_counts_them(tmp_path, clock):
    box = Outbox(tmp_path / "o.sqlite", max_age_s=100)
    put(box, size=50)
    put(box, size=60)
    clock.now += 60
    put(box, size=70)
    assert box.stats().oldest_age_s == pytest.approx(60)
    clock.now += 50  # the first two are now 110 s old, the third 50 s
    assert [seq_of(r.payload) for r in box.pending(10)] == [3]
    assert (box.stats().dropped, box.stats().dropped_bytes) == (2, 110)
    clock.now += 100
    put(box, size=10)
    assert [seq_of(r.payload) for r in box.pending(10)] == [4]
    assert (box.stats().dropped, box.stats().dropped_bytes, box.stats().queued) == (3, 180, 1)
    box.close()


def test_a_message_bigger_than_the_outbox_is_refused_not_dropped(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", max_bytes=500)
    put(box, size=100)
    with pytest.raises(OutboxError, match="larger than the whole outbox") as err:
        put(box, size=501)
    assert isinstance(err.value, EdgekitError) and "\n" not in str(err.value)
    assert put(box) == 2  # the refused message consumed no seq
    assert (box.stats().queued, box.stats().dropped) == (2, 0)
    box.close()


@pytest.mark.parametrize("kind, topic, payload", [
    ("", "t", b"x"), ("telemetry", "", b"x"), ("telemetry", "t", "text, not bytes")])
def test_bad_arguments_are_refused(outbox, kind, topic, payload):
    with pytest.raises(OutboxError):
        outbox.put(kind, topic, lambda seq: payload)
    assert outbox.stats().queued == 0


def test_threads_putting_at_once_get_unique_increasing_seqs(outbox):
    per_thread: dict[int, list[int]] = {}

    def worker(index: int) -> None:
        per_thread[index] = [put(outbox) for _ in range(150)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = sorted(s for seqs in per_thread.values() for s in seqs)
    assert every == list(range(1, 601))
    assert all(seqs == sorted(seqs) for seqs in per_thread.values())
    rows = outbox.pending(1000)
    assert [seq_of(r.payload) for r in rows] == every  # id order is seq order


def test_concurrent_acks_and_puts_keep_the_totals_right(outbox):
    done = threading.Event()

    def acker() -> None:
        while not done.is_set():
            outbox.ack_many(r.id for r in outbox.pending(7))

    thread = threading.Thread(target=acker)
    thread.start()
    for _ in range(300):
        put(outbox, size=40)
    done.set()
    thread.join()
    rows = outbox.pending(1000)
    assert outbox.stats().queued == len(rows)
    assert outbox.stats().queued_bytes == sum(len(r.payload) for r in rows)


def test_file_is_wal_with_full_sync_and_passes_integrity_check(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    put(box)
    db = sqlite3.connect(tmp_path / "o.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    box.close()


def test_a_file_that_is_not_an_outbox_is_one_clear_error(tmp_path):
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match=r"cannot be opened.*move the file away") as err:
        Outbox(path)
    assert "\n" not in str(err.value)


def test_a_newer_schema_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "o.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(OutboxError, match="upgrade the agent"):
        Outbox(tmp_path / "o.sqlite")


def test_caps_must_be_positive(tmp_path):
    with pytest.raises(OutboxError):
        Outbox(tmp_path / "o.sqlite", max_bytes=0)


def test_a_closed_outbox_says_so(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    box.close()
    box.close()
    for call in (lambda: put(box), box.stats, lambda: box.pending(1), lambda: box.ack(1)):
        with pytest.raises(OutboxError, match="is closed"):
            call()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(min_value=20, max_value=400), min_size=1, max_size=30),
       cap=st.integers(min_value=400, max_value=2000))
def test_size_cap_keeps_the_newest_suffix_and_counts_the_rest(tmp_path_factory, sizes, cap):
    box = Outbox(tmp_path_factory.mktemp("o") / "o.sqlite", max_bytes=cap)
    for size in sizes:
        put(box, size=size)
    stats = box.stats()
    kept = [seq_of(r.payload) for r in box.pending(100)]
    assert kept == list(range(len(sizes) - len(kept) + 1, len(sizes) + 1))  # newest suffix
    assert stats.queued_bytes == sum(sizes[len(sizes) - len(kept):]) <= cap
    assert stats.dropped == len(sizes) - len(kept)
    assert stats.dropped_bytes == sum(sizes[:len(sizes) - len(kept)])
    # dropping stops as soon as it fits: the newest dropped message would not have fit
    if stats.dropped:
        assert stats.queued_bytes + sizes[stats.dropped - 1] > cap
    box.close()
