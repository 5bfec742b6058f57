"""Leader failover on PostgreSQL with real processes: two ``cloud serve`` on one database;
the leader SIGKILLed, then a leader SIGSTOPped with its sessions ended
(``pg_terminate_backend``): the other takes over within 60 s each time, the paused one
steps down when it wakes, and a numbered telemetry stream published throughout is
stored exactly once. Also: connections carry TCP keepalives both ways, and a leader
re-checks its lock before a job writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloud_sync.leader import Leadership
from cloud_sync.store.engine import PG_KEEPALIVES
from tests.brokers import Mosquitto
from tests.cloud_sync.ingest import messages as m
from tests.cloud_sync.ingest.conftest import Publisher, count, wait_subscribed, wait_until
from tests.cloud_sync.test_serve import _children

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
TAKEOVER_S = 60
DEVICES = 4


def _backends(engine, pid: int) -> list[int]:
    """PostgreSQL backends of the process ``pid`` (its connections' application_name)."""
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE "
                                         "application_name = :n"), {"n": f"edgekit-{pid}"})
                    .scalars())


def _leader(engine, pids: list[int]) -> int | None:
    """Which of the processes ``pids`` holds an advisory lock now."""
    with engine.connect() as conn:
        names = conn.execute(sa.text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted")).scalars()
        held = {n for n in names}
    return next((pid for pid in pids if f"edgekit-{pid}" in held), None)


def test_connections_use_tcp_keepalives_both_ways(engine):
    with engine.connect() as conn:
        server = {k: conn.exec_driver_sql(f"SHOW tcp_keepalives_{k}").scalar()
                  for k in PG_KEEPALIVES}
        client = conn.connection.dbapi_connection.info.get_parameters()
    assert server == {k: str(v) for k, v in PG_KEEPALIVES.items()}
    assert client["keepalives"] == "1"
    assert {k: client[f"keepalives_{k}"] for k in PG_KEEPALIVES} == server
    assert PG_KEEPALIVES["idle"] + PG_KEEPALIVES["interval"] * PG_KEEPALIVES["count"] <= 60


def test_a_leader_whose_session_ended_knows_before_it_writes(engine):
    first, second = Leadership(engine, holder="a"), Leadership(engine, holder="b")
    try:
        assert first.step() is True and first.confirm() is True
        for pid in _backends(engine, os.getpid()):
            if _holds_advisory_lock(engine, pid):
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        assert second.step() is True
        assert first.is_leader  # the last renewal said so...
        assert first.confirm() is False  # ...but a job about to write asks the database
        assert not first.is_leader
    finally:
        first.release()
        second.release()


def test_deployments_in_two_schemas_of_one_database_each_have_a_leader(engine, pg_admin_url):
    from cloud_sync.store import open_store
    from tests.databases import _pg_schema_url

    schemas = _pg_schema_url(pg_admin_url)
    other = open_store(next(schemas))
    here, there = Leadership(engine, holder="here"), Leadership(other, holder="there")
    rival = Leadership(engine, holder="rival")
    try:
        assert here.step() is True
        assert there.step() is True  # another deployment: its own lock
        assert rival.step() is False
    finally:
        for leadership in (here, there, rival):
            leadership.release()
        other.dispose()
        schemas.close()


def _holds_advisory_lock(engine, pid: int) -> bool:
    return bool(count(engine, f"SELECT count(*) FROM pg_locks WHERE pid = {int(pid)} "
                              "AND locktype = 'advisory' AND granted"))


class Stream:
    """Numbered telemetry from ``DEVICES`` devices, published until ``stop``."""

    def __init__(self, port: int) -> None:
        self.publisher = Publisher(port, client_id="failover-stream")
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            self.publisher.send([(m.topic(f"ctr-{d}"), m.telemetry(f"ctr-{d}", seq))
                                 for d in range(DEVICES)])
            self.sent += DEVICES
            seq += 1
            time.sleep(0.1)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(30)
        self.publisher.close()
        return self.sent


class Serves:
    """``cloud serve`` processes on one database and broker, each logging to a file."""

    def __init__(self, tmp_path: Path, db_url: str, broker: Mosquitto) -> None:
        from edge_agent.bundle.signing import generate_keypair

        self.tmp, self.db_url, self.broker = tmp_path, db_url, broker
        self.pub = generate_keypair(tmp_path / "keys")[1]
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.tmp / f"serve-{name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgekit.cli.main", "cloud", "serve", "--db", self.db_url,
             "--broker", self.broker.url, "--pubkey", str(self.pub), "--workers", "1",
             "--no-http", "--client-id-prefix", f"failover-{name}"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "EDGEKIT_CLOUD_DIR": str(self.tmp / f"data-{name}")})
        proc.log_path = Path(log.name)
        self.procs.append(proc)
        wait_until(lambda: len(_children(proc.pid)) == 1, 60, f"serve {name}'s worker")
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _takes_over(engine, new: subprocess.Popen, old: subprocess.Popen) -> float:
    start = time.monotonic()
    wait_until(lambda: _leader(engine, [new.pid, old.pid]) == new.pid, TAKEOVER_S,
               f"serve {new.pid} to lead after {old.pid} failed")
    return time.monotonic() - start


@pytest.mark.slow
def test_failover_after_sigkill_and_a_paused_leader_loses_nothing(tmp_path, db_url, engine):
    with Mosquitto(tmp_path / "broker", max_inflight=1000) as broker:
        serves = Serves(tmp_path, db_url, broker)
        try:
            _failover_scenario(serves, engine, broker)
        finally:
            serves.stop_all()


def _failover_scenario(serves: Serves, engine, broker: Mosquitto) -> None:
    first, second = serves.start("a"), serves.start("b")
    names = {first.pid: "a", second.pid: "b"}
    wait_until(lambda: _leader(engine, [first.pid, second.pid]) is not None, 30, "a leader")
    probe = Publisher(broker.port, client_id="failover-probe")
    wait_subscribed(engine, probe)
    probe.close()
    stream = Stream(broker.port).start()
    leader = first if _leader(engine, [first.pid, second.pid]) == first.pid else second
    other = second if leader is first else first
    time.sleep(2)
    leader.kill()  # SIGKILL
    assert _takes_over(engine, other, leader) < TAKEOVER_S
    restarted = serves.start(names[leader.pid])  # same client ids: its broker sessions resume
    time.sleep(2)
    os.kill(other.pid, signal.SIGSTOP)
    with engine.connect() as conn:
        for pid in _backends(engine, other.pid):
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    assert _takes_over(engine, restarted, other) < TAKEOVER_S
    os.kill(other.pid, signal.SIGCONT)
    wait_until(lambda: "is no longer the leader" in other.log_path.read_text(errors="replace"),
               30, "the paused leader to step down once awake")
    time.sleep(2)
    sent = stream.stop()
    stored = "SELECT count(*) FROM messages WHERE device_id LIKE 'ctr-%'"
    wait_until(lambda: count(engine, stored) >= sent, 90, f"all {sent} messages stored")
    assert count(engine, stored) == sent
    assert count(engine, "SELECT count(DISTINCT device_id || ':' || seq) FROM messages "
                         "WHERE device_id LIKE 'ctr-%'") == sent
