"""A rollout survives its leader: two ``cloud serve`` on one PostgreSQL, one broker and one
object store (an S3 API server, as the README's scale-out guide sets it up: an update's
download URL must not name one serve), real agents; the leader is SIGKILLed right after
the canary's command goes out. The other
serve leads within 60 s and carries on; the killed one is started again, as its
supervisor would (the broker keeps its worker's share of the shared subscription queued
for its session until then). The rollout finishes through every wave, and each device
installs the new version exactly once (one probation answer per device)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from cloud_sync.ingest.__main__ import client_id
from edgekit.local_broker import free_port
from tests.cloud_sync.rollouts.fleet import ROOT, TOKEN, Fleet, rows, wait_for
from tests.cloud_sync.test_failover import TAKEOVER_S, _leader
from tests.s3 import CREDENTIALS, MotoS3

DEVICES = ["d0", "d1", "d2", "d3"]
DONE = ("done", "rolled_back")
pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture()
def fleet(tmp_path, capsys, keypair, monkeypatch, db_url):
    monkeypatch.setenv("EDGEKIT_CLOUD_DIR", str(tmp_path / "data"))  # shared by both serves
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    with MotoS3() as s3:
        bucket = f"edgekit-{uuid.uuid4().hex[:12]}"
        s3.client().create_bucket(Bucket=bucket)
        made = Fleet(tmp_path, capsys, keypair, DEVICES)
        made.db_url = db_url
        made.cloud = {"artifacts": {"backend": "s3", "bucket": bucket, "endpoint_url": s3.url}}
        yield made
        made.stop()


def _serve(fleet, prefix: str) -> subprocess.Popen:
    """Another ``cloud serve`` on the same store, broker and data folder, on an HTTP port of
    its own, its workers' MQTT client ids ``<prefix>-<slot>``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit.cli.main", "cloud", "serve", "--db", fleet.db_url,
         "--broker", fleet.broker.url, "--pubkey", str(fleet.keypair[1]), "--workers", "1",
         "--config", str(fleet.tmp / "cloud.json"), "--http", f"127.0.0.1:{free_port()}",
         "--client-id-prefix", prefix],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), EDGEKIT_API_TOKEN=TOKEN),
        stdout=subprocess.DEVNULL, stderr=fleet._log(f"serve-{prefix}"))
    fleet.procs.append(proc)
    return proc


def _status(fleet, rid: int) -> dict | None:
    try:
        return fleet.rollout("status", str(rid))
    except AssertionError:  # the API of the killed serve is gone
        return None


@pytest.mark.slow
def test_a_rollout_finishes_after_its_leader_is_killed(fleet, make_onnx_bundle):
    from cloud_sync.store import open_store

    fleet.start(make_onnx_bundle("1"))
    second = _serve(fleet, "second")
    prefixes = {fleet.serve.pid: client_id(None, 0).rsplit("-", 1)[0], second.pid: "second"}
    engine = open_store(fleet.db_url)
    try:
        pids = [fleet.serve.pid, second.pid]
        wait_for(lambda: _leader(engine, pids) is not None, 60, "a leader")
        wait_for(lambda: len(rows(engine, "SELECT DISTINCT device_id FROM messages WHERE "
                                          "kind = 'telemetry' AND inferences > 0")) == 4,
                 90, "telemetry with inferences from every agent")
        fleet.publish(make_onnx_bundle("2"))
        rid = fleet.rollout("start", "--model", "tiny", "--version", "2", "--fleet", "lab",
                            "--canary", "1", "--bake", "4", "--waves", "50,100")["id"]
        wait_for(lambda: rows(engine, "SELECT count(*) FROM rollout_devices WHERE "
                                      "rollout_id = :r AND sent_at IS NOT NULL", r=rid)[0][0] >= 1,
                 60, "the canary's command")
        leader = _leader(engine, pids)
        os.kill(leader, signal.SIGKILL)
        killed = time.monotonic()
        survivor = next(p for p in pids if p != leader)
        wait_for(lambda: _leader(engine, [survivor]) == survivor, TAKEOVER_S,
                 "the other serve to lead")
        assert time.monotonic() - killed < TAKEOVER_S
        fleet.api = _api_of(fleet, survivor)
        # its supervisor brings the killed host back (same MQTT client ids): the broker kept
        # its worker's share of the shared subscription queued for that session
        _serve(fleet, prefixes[leader])
        doc = wait_for(lambda: (d := _status(fleet, rid)) is not None and d["state"] in DONE
                       and d, 120, "the rollout to finish",
                       lambda: (_status(fleet, rid) or {}).get("timeline"))
        assert doc["state"] == "done", (doc["verdict"], doc["devices"])
        assert {d["state"] for d in doc["devices"]} == {"committed"}
        probations = rows(engine, "SELECT device_id, payload FROM messages "
                                  "WHERE kind = 'cmd/result'")
        installed = [d for d, p in probations
                     if (json.loads(p) if isinstance(p, str) else p).get("detail", {})
                     .get("phase") == "probation"]
        assert sorted(installed) == DEVICES  # one install each, none repeated
    finally:
        engine.dispose()


def _api_of(fleet, pid: int) -> str:
    """The HTTP address of the serve process ``pid``."""
    for proc in fleet.procs:
        if proc.pid == pid:
            args = proc.args
            return "http://" + args[args.index("--http") + 1]
    raise AssertionError(f"no serve with pid {pid}")
