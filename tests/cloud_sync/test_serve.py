"""cloud serve: the CLI end to end (workers, HTTP API, clean SIGTERM), leader election and
device state from silence, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloud_sync.config import CloudConfig
from cloud_sync.leader import Leadership
from cloud_sync.registry import Sighting, get_device, record_seen
from cloud_sync.serve.jobs import mark_silent
from cloud_sync.store import transaction
from edgekit.local_broker import free_port
from tests.brokers import Mosquitto
from tests.cloud_sync.ingest import messages as m
from tests.cloud_sync.ingest.conftest import Publisher, count, wait_until
from tests.httpserve import healthy


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_serve_ingests_serves_http_and_stops_cleanly(tmp_path, db_url, engine):
    from edge_agent.bundle.signing import generate_keypair

    _priv, pub = generate_keypair(tmp_path / "keys")
    port = free_port()
    with Mosquitto(tmp_path / "broker", max_inflight=1000) as broker:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgekit.cli.main", "cloud", "serve", "--db", db_url,
             "--broker", broker.url, "--pubkey", str(pub), "--workers", "2",
             "--http", f"127.0.0.1:{port}"],
            env={**os.environ, "EDGEKIT_CLOUD_DIR": str(tmp_path / "data"),
                 "EDGEKIT_LOG_LEVEL": "WARNING"})
        try:
            wait_until(lambda: healthy(port, timeout=1), 60, "the HTTP API")
            wait_until(lambda: len(_children(proc.pid)) == 2, 30, "2 ingest workers")
            workers = _children(proc.pid)
            publisher = Publisher(broker.port)
            deadline = time.monotonic() + 30
            seq = 0
            while count(engine, "SELECT count(*) FROM messages") == 0:
                assert time.monotonic() < deadline, "serve stored nothing"
                publisher.send([(m.topic("pi-1"), m.telemetry("pi-1", seq))])
                seq += 1
                time.sleep(0.3)
            publisher.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert not [pid for pid in workers if _alive(pid)], "orphan ingest workers"


def test_only_one_instance_leads_and_the_next_takes_over(engine):
    first, second = Leadership(engine, holder="a", ttl_s=5), Leadership(engine, holder="b",
                                                                          ttl_s=5)
    assert first.step() is True
    assert second.step() is False
    assert first.step() is True  # renewing keeps it
    first.release()
    assert second.step() is True and second.is_leader
    second.release()


def test_silence_makes_devices_stale_then_offline(engine):
    cfg = CloudConfig.from_dict({"data_dir": "/x", "ingest": {"telemetry_interval_s": 10,
                                                               "stale_after": 3,
                                                               "offline_after": 10}})
    with transaction(engine) as conn:
        record_seen(conn, [Sighting("quiet", "lab", 1000.0), Sighting("gone", "lab", 1000.0),
                           Sighting("fresh", "lab", 1095.0)])
        conn.execute(sa.text("UPDATE devices SET last_seen = 900 WHERE id = 'gone'"))
        assert mark_silent(conn, cfg, now=1040.0) == {"stale": 1, "offline": 1}
        states = {d: get_device(conn, d).state for d in ("quiet", "gone", "fresh")}
    assert states == {"quiet": "stale", "gone": "offline", "fresh": "online"}
