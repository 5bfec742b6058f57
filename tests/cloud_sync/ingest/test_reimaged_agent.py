"""A real agent loses its outbox, then is re-imaged: a real Mosquitto and an ingest worker
store its new telemetry (seqs from 1 again, under a new incarnation) and its registry row
shows what it runs now (on SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.local_broker import free_port
from tests.cloud_sync.rollouts.fleet import rows, wait_for

ROOT = Path(__file__).resolve().parents[3]
DEVICE = "pi-re"


def _agent(broker, bundle: Path, pubkey: Path, state: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edgekit.cli.main", "agent", "run", "--bundle", str(bundle),
           "--device-id", DEVICE, "--fleet", "lab", "--broker", broker.url, "--pubkey",
           str(pubkey), "--state-dir", str(state), "--telemetry-interval", "0.3",
           "--http", f"127.0.0.1:{free_port()}"]
    return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _telemetry(engine) -> list:
    return rows(engine, "SELECT incarnation, seq, model_version FROM messages WHERE "
                f"device_id = '{DEVICE}' AND kind = 'telemetry' ORDER BY id")


def _device(engine) -> tuple:
    found = rows(engine, f"SELECT state, model_version, incarnation FROM devices "
                 f"WHERE id = '{DEVICE}'")
    return tuple(found[0]) if found else ()


def _run_until(engine, broker, bundle, keypair, state, done, label) -> None:
    proc = _agent(broker, bundle, keypair[1], state)
    try:
        wait_for(lambda: proc.poll() is None and done(), 90, label,
                 lambda: (proc.poll(), _device(engine), _telemetry(engine)[-3:]))
    finally:
        _stop(proc)


@pytest.mark.slow
def test_an_agent_that_lost_its_outbox_or_was_reimaged_is_heard_again(
        tmp_path, engine, mqtt_broker, thread_worker, make_onnx_bundle, keypair):
    thread_worker()
    state, v1 = tmp_path / "state", make_onnx_bundle("1")

    _run_until(engine, mqtt_broker, v1, keypair, state,
               lambda: len(_telemetry(engine)) >= 4 and _device(engine)[:2] == ("online", "1"),
               "the first run's telemetry and status")
    wait_for(lambda: _device(engine)[0] == "offline", 30, "the stop's offline status")
    first = {inc for inc, _seq, _v in _telemetry(engine)}
    high = max(seq for _inc, seq, _v in _telemetry(engine))
    assert len(first) == 1 and "" not in first

    for path in state.glob("outbox.sqlite*"):  # the outbox is lost: seqs start at 1 again
        path.unlink()
    _run_until(engine, mqtt_broker, v1, keypair, state,
               lambda: [s for inc, s, _v in _telemetry(engine) if inc not in first and s < high]
               and _device(engine)[0] == "online", "telemetry and status of the new outbox")
    second = {inc for inc, _seq, _v in _telemetry(engine)} - first
    assert len(second) == 1 and _device(engine)[2] in second

    shutil.rmtree(state)  # re-imaged with a newer factory model
    v2 = make_onnx_bundle("2", seed=1)
    _run_until(engine, mqtt_broker, v2, keypair, state,
               lambda: _device(engine)[:2] == ("online", "2")
               and [s for _i, s, v in _telemetry(engine) if v == "2" and s < high],
               "the re-imaged device online with v2, its telemetry stored")
    third = _device(engine)[2]
    assert third not in first | second
    assert {(inc, seq) for inc, seq, _v in _telemetry(engine)} >= {(third, 1)} | {
        (inc, 1) for inc in first | second}
