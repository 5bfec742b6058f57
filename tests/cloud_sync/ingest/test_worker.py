"""One worker against a real mosquitto: stored once, acknowledged after commit, counted."""

from __future__ import annotations

import time

from tests.cloud_sync.ingest import messages as m
from tests.cloud_sync.ingest.conftest import count, wait_until


def test_messages_are_stored_once_and_acknowledged(engine, thread_worker, publisher):
    worker = thread_worker()
    items = [(m.topic(f"pi-{d}"), m.telemetry(f"pi-{d}", s)) for d in range(5) for s in range(40)]
    publisher.send(items + items[:30])  # 30 redeliveries
    wait_until(lambda: count(engine, "SELECT value FROM ingest_stats WHERE counter = "
                                     "'duplicate'") == 30, 20, "the duplicates to be counted")
    assert count(engine, "SELECT count(*) FROM messages") == 200
    worker.stop()
    # a worker with the same client id gets nothing again: every message was acknowledged
    thread_worker(client_id="test-ingest-0")
    time.sleep(1.0)
    assert count(engine, "SELECT value FROM ingest_stats WHERE counter = 'duplicate'") == 30
    assert count(engine, "SELECT count(*) FROM devices WHERE state = 'online'") == 5


def test_bad_messages_never_stop_the_worker(engine, thread_worker, publisher):
    thread_worker()
    bad = list(m.malformed("pi-1").values())
    publisher.send([*bad, (m.topic("pi-1"), m.telemetry("pi-1", 1))])
    wait_until(lambda: count(engine, "SELECT count(*) FROM messages") == 1, 20, "the good one")
    wait_until(lambda: count(engine, "SELECT count(*) FROM quarantine") == len(bad), 20,
               "the bad ones in quarantine")


def test_messages_wait_at_the_broker_while_the_worker_is_down(engine, thread_worker,
                                                              publisher):
    thread_worker().stop()  # the session (and its shared subscription) stays at the broker
    publisher.send([(m.topic("pi-1"), m.telemetry("pi-1", s)) for s in range(25)])
    thread_worker()
    wait_until(lambda: count(engine, "SELECT count(*) FROM messages") == 25, 20,
               "the queued messages after the restart")
