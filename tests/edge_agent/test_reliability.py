"""Reliability of outbox + link: a long outage, crashes mid-write, a big backlog, the cap.

The point throughout: the DEVICE side loses nothing it committed. The test broker
and subscriber are persistent where a broker restart is involved, so what the
subscriber sees is what the device delivered.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_agent.outbox import Outbox
from tests.brokers import fast_config, free_port, message, seq_of

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TOPIC = "t/dev/telemetry"
OUTAGE_S = 60.0


class Producer:
    """Puts one message every ``1 / rate`` seconds on a thread; remembers the seqs it got."""

    def __init__(self, outbox: Outbox, rate: float) -> None:
        self.outbox, self.period = outbox, 1.0 / rate
        self.seqs: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            payload = lambda seq: json.dumps({"seq": seq, "ts": time.time()}).encode()  # noqa: E731
            self.seqs.append(self.outbox.put("telemetry", TOPIC, payload))


def check_delivery(received: list[tuple[str, bytes, bool]], sent: list[int]) -> None:
    """Every seq arrived; a duplicate carries the very same bytes; first arrivals in order."""
    by_seq: dict[int, set[bytes]] = {}
    first_seen: list[int] = []
    for _topic, payload, _retain in received:
        seq = seq_of(payload)
        if seq not in by_seq:
            first_seen.append(seq)
        by_seq.setdefault(seq, set()).add(payload)
    missing = sorted(set(sent) - set(by_seq))
    assert not missing, f"{len(missing)} seqs never arrived, e.g. {missing[:10]}"
    assert all(len(payloads) == 1 for payloads in by_seq.values()), "a resend changed bytes"
    assert first_seen == sorted(first_seen), "messages overtook each other"


def test_a_sixty_second_broker_outage_loses_nothing(make_broker, make_subscriber, make_link,
                                                    outbox):
    broker = make_broker(persistent=True)
    subscriber = make_subscriber(broker.port, TOPIC, persistent=True)
    link = make_link(fast_config(broker.port, reconnect_max_s=2.0))
    link.start()
    producer = Producer(outbox, rate=10)
    producer.start()
    time.sleep(2)
    broker.stop()
    time.sleep(OUTAGE_S)
    backlog = outbox.stats().queued
    broker.start()
    time.sleep(2)
    producer.stop()
    assert link.wait_drained(30)
    sent = producer.seqs
    subscriber.wait_for(lambda got: len(got) >= len(sent), 30)
    time.sleep(0.5)  # let any late duplicate in too
    check_delivery(subscriber.received(), sent)
    assert backlog >= 0.9 * OUTAGE_S * 10, f"only {backlog} messages queued during the outage"
    assert sent == list(range(1, len(sent) + 1))
    stats = link.stats()
    assert stats["disconnects"] >= 1 and stats["connects"] >= 2
    assert outbox.stats().dropped == 0


def test_a_writer_killed_twenty_times_keeps_every_committed_message(tmp_path):
    path = tmp_path / "outbox.sqlite"
    promised: set[int] = set()
    delivered: set[int] = set()
    highest = 0
    rng = random.Random(20)
    for _ in range(20):
        puts, delivers = _run_and_kill(path, rng.uniform(0.02, 0.35))
        if puts:
            assert min(puts) > highest, "a seq was reused after a crash"
            highest = max(puts)
        promised |= set(puts)
        delivered |= set(delivers)
        stored = _check_file(path)
        lost = promised - stored - delivered
        assert not lost, f"committed messages lost after SIGKILL: {sorted(lost)[:10]}"
    assert len(promised) > 200  # the kills really landed mid-stream


def _run_and_kill(path: Path, after_s: float) -> tuple[list[int], list[int]]:
    """Run the writer child, SIGKILL it ``after_s`` seconds after it is ready; its report."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.edge_agent.outbox_writer", str(path)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        time.sleep(after_s)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
    lines = [line.split() for line in out.splitlines() if line.count(" ") == 1]
    return ([int(n) for word, n in lines if word == "put"],
            [int(n) for word, n in lines if word == "deliver"])


def _check_file(path: Path) -> set[int]:
    """Integrity-check the outbox file after a crash; the seqs it holds (each once)."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [json.loads(p)["seq"] for (p,) in db.execute("SELECT payload FROM messages")]
    finally:
        db.close()
    assert len(seqs) == len(set(seqs))
    return set(seqs)


def test_a_fifty_thousand_message_backlog_drains_within_the_window(broker, make_subscriber,
                                                                   make_link, outbox):
    total, window = 50_000, 32
    subscriber = make_subscriber(broker.port, TOPIC)
    outbox._db.execute("PRAGMA synchronous=OFF")  # the fill is not under test: no fsync per put
    for _ in range(total):
        outbox.put("telemetry", TOPIC, message)
    outbox._db.execute("PRAGMA synchronous=FULL")
    link = make_link(fast_config(broker.port), max_inflight=window)
    started = time.monotonic()
    link.start()
    assert link.wait_drained(180), f"still queued: {outbox.stats().queued}"
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 60
    while subscriber.count() < total and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [seq_of(p) for _t, p, _r in subscriber.received()] == list(range(1, total + 1))
    stats = link.stats()
    assert stats["disconnects"] == 0 and stats["connects"] == 1
    assert stats["max_inflight_seen"] == window  # the window was used, and never exceeded
    assert stats["published"] == stats["acked"] == total
    print(f"drained {total} messages in {elapsed:.1f} s ({total / elapsed:.0f} msg/s)")


def test_reaching_the_cap_drops_the_oldest_and_counts_exactly(tmp_path, make_broker,
                                                              make_subscriber, make_link):
    box = Outbox(tmp_path / "capped.sqlite", max_bytes=100 * 200)
    port = free_port()
    offline = make_link(fast_config(port), outbox=box)  # no broker there: the device is offline
    offline.start()
    for _ in range(1000):
        box.put("telemetry", TOPIC, lambda seq: message(seq, 200))
    offline.stop()
    stats = box.stats()
    assert (stats.queued, stats.queued_bytes) == (100, 100 * 200)
    assert (stats.dropped, stats.dropped_bytes) == (900, 900 * 200)
    broker = make_broker(port=port)
    subscriber = make_subscriber(broker.port, TOPIC)
    link = make_link(fast_config(port), outbox=box, client_id="dev-online")
    link.start()
    assert link.wait_drained(20)
    got = subscriber.wait_for(lambda got: len(got) >= 100, 10)
    assert [seq_of(p) for _t, p, _r in got] == list(range(901, 1001))
    link.stop()
    box.close()
    reopened = Outbox(tmp_path / "capped.sqlite", max_bytes=100 * 200)
    assert (reopened.stats().dropped, reopened.stats().dropped_bytes) == (900, 180_000)
    assert reopened.stats().queued == 0
    reopened.close()
