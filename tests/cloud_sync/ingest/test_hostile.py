"""No message can deafen ingest: hostile payloads (deep nesting, bare arrays, huge numbers,
NaN literals, 50,000 keys...) through a real Mosquitto and a real worker process end
stored or quarantined with a reason, and valid messages behind them are stored within
seconds. A worker whose writer thread dies exits, so its supervisor starts a new one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from cloud_sync.ingest.classify import REASONS, Received, Rejected, classify
from cloud_sync.serve.supervisor import WorkerSupervisor
from tests.cloud_sync.ingest import hostile
from tests.cloud_sync.ingest import messages as m
from tests.cloud_sync.ingest.conftest import count, wait_subscribed, wait_until

VALID_DEVICES, VALID_EACH = 5, 20
EVIL = m.topic("evil")


@pytest.mark.parametrize("name", sorted(hostile.corpus("evil")))
def test_classify_judges_every_hostile_payload_without_raising(name):
    payload, expected = hostile.corpus("evil")[name]
    judged = classify(Received(m.topic("evil"), payload, 1.0))
    if expected in REASONS:
        assert isinstance(judged, Rejected) and judged.reason == expected, judged
        assert judged.detail
    else:
        assert not isinstance(judged, Rejected), judged


@pytest.mark.slow
def test_hostile_corpus_then_valid_messages_all_stored_within_seconds(engine, make_cfg,
                                                                     publisher):
    corpus = hostile.corpus("evil")
    workers = WorkerSupervisor(make_cfg(), client_id_prefix="hostile-test")
    workers.start()
    try:
        wait_subscribed(engine, publisher)
        publisher.send([(m.topic("evil"), payload) for payload, _ in corpus.values()])
        sent = time.monotonic()
        publisher.send([(m.topic(f"pi-{d}"), m.telemetry(f"pi-{d}", s))
                        for s in range(VALID_EACH) for d in range(VALID_DEVICES)])
        total = VALID_DEVICES * VALID_EACH
        wait_until(lambda: _valid_stored(engine) == total, 30,
                   f"all {total} valid messages stored behind the hostile ones")
        took = time.monotonic() - sent
        wait_until(lambda: _hostile_judged(engine) == len(corpus), 30,
                   "every hostile payload stored or quarantined")
        restarts = sum(s.restarts for s in workers.slots)
    finally:
        workers.stop()
    assert took < 20, f"valid messages waited {took:.1f} s behind hostile ones"
    assert restarts == 0, "a hostile payload crashed the worker"
    reasons = _quarantine_reasons(engine)
    for name, (_payload, expected) in corpus.items():
        if expected in REASONS:
            assert reasons.get(expected, 0) >= 1, f"{name}: no {expected} quarantine row"
    assert set(reasons) <= set(REASONS), reasons


def _valid_stored(engine) -> int:
    return count(engine, "SELECT count(*) FROM messages WHERE device_id LIKE 'pi-%'")


def _hostile_judged(engine) -> int:
    return (count(engine, "SELECT count(*) FROM messages WHERE device_id = 'evil'")
            + count(engine, f"SELECT count(*) FROM quarantine WHERE topic = '{EVIL}'"))


def _quarantine_reasons(engine) -> dict[str, int]:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT reason, count(*) FROM quarantine "
                                         "WHERE topic = :t GROUP BY reason"), {"t": EVIL}).all())


WORKER_WITH_A_BUG = textwrap.dedent("""
    import sys
    import cloud_sync.ingest.worker as worker

    def write_resilient(*args, **kwargs):  # a bug in the store path, past every guard
        raise RuntimeError("simulated bug in the writer thread")

    worker.write_resilient = write_resilient
    from cloud_sync.ingest.__main__ import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_worker_whose_writer_thread_dies_exits(tmp_path, make_cfg, engine, publisher):
    config = tmp_path / "cloud.json"
    config.write_text(json.dumps(make_cfg().model_dump(mode="json")))
    proc = subprocess.Popen([sys.executable, "-c", WORKER_WITH_A_BUG, "--config", str(config),
                             "--client-id-prefix", "dying-writer"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        seq = 0
        while proc.poll() is None and time.monotonic() < deadline:
            publisher.send([(m.topic("pi-1"), m.telemetry("pi-1", seq))])
            seq += 1
            time.sleep(0.3)
        assert proc.poll() is not None, "the worker kept running with a dead writer thread"
    finally:
        if proc.poll() is None:
            proc.kill()
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1, err
    assert "writer thread died" in err
