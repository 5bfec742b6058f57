"""SIGKILL ingest workers again and again during a stream: nothing lost, nothing twice."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from cloud_sync.serve.supervisor import WorkerSupervisor
from tests.cloud_sync.ingest import messages as m
from tests.cloud_sync.ingest.conftest import count, wait_subscribed, wait_until

pytestmark = pytest.mark.slow
DEVICES, PER_DEVICE, KILLS = 20, 150, 6


def _stream(publisher, done: threading.Event) -> None:
    for s in range(PER_DEVICE):
        publisher.send([(m.topic(f"pi-{d}"), m.telemetry(f"pi-{d}", s)) for d in range(DEVICES)])
        time.sleep(0.03)
    done.set()


def test_sigkilled_workers_lose_nothing_and_store_nothing_twice(engine, make_cfg, publisher):
    workers = WorkerSupervisor(make_cfg(workers=2), client_id_prefix="kill-test",
                               backoff=(0.1, 0.5))
    workers.start()
    done, rng, kills = threading.Event(), random.Random(3), 0
    try:
        wait_until(lambda: len(workers.pids()) == 2, 10, "2 workers")
        wait_subscribed(engine, publisher)
        threading.Thread(target=_stream, args=(publisher, done), daemon=True).start()
        while not done.is_set() or kills < KILLS:
            time.sleep(0.6)
            pids = workers.pids()
            if pids and kills < KILLS:
                os.kill(rng.choice(pids), signal.SIGKILL)
                kills += 1
        total = DEVICES * PER_DEVICE
        wait_until(lambda: _stored(engine) == total, 90,
                   f"all {total} messages stored")
        restarts = sum(s.restarts for s in workers.slots)
    finally:
        workers.stop()
    assert kills == KILLS and restarts >= KILLS
    probes = count(engine, "SELECT count(*) FROM messages WHERE device_id = 'probe'")
    assert count(engine, "SELECT value FROM ingest_stats WHERE counter = "
                         "'accepted:telemetry'") == total + probes
    assert count(engine, "SELECT count(*) FROM seq_gaps") == 0
    assert count(engine, "SELECT count(DISTINCT device_id || ':' || seq) FROM messages "
                         "WHERE fleet = 'lab'") == total


def _stored(engine) -> int:
    return count(engine, "SELECT count(*) FROM messages WHERE fleet = 'lab'")
