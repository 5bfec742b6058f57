"""PostgreSQL under pressure: transient errors on the COPY path (lock timeout, a connection
ended under the worker) are retried, never quarantined as ``store_error``; real
PostgreSQL, real Mosquitto, a worker on a thread."""

from __future__ import annotations

import threading

import psycopg
import pytest
import sqlalchemy as sa

from cloud_sync.ingest import retry
from cloud_sync.store import open_store
from tests.cloud_sync.ingest import messages as m
from tests.cloud_sync.ingest.conftest import ThreadWorker, count, wait_until

N = 30


@pytest.mark.parametrize("error,kind", [
    (psycopg.errors.DeadlockDetected("deadlock"), retry.CONTENTION),
    (psycopg.errors.SerializationFailure("serialize"), retry.CONTENTION),
    (psycopg.errors.LockNotAvailable("lock timeout"), retry.CONTENTION),
    (psycopg.errors.QueryCanceled("statement timeout"), retry.CONTENTION),
    (psycopg.errors.AdminShutdown("terminated"), retry.UNAVAILABLE),
    (psycopg.OperationalError("server closed the connection unexpectedly"), retry.UNAVAILABLE),
    (psycopg.errors.TooManyConnections("too many"), retry.UNAVAILABLE),
    (psycopg.errors.NumericValueOutOfRange("out of range"), None),
    (psycopg.errors.UniqueViolation("duplicate"), None),
    (ValueError("a bug"), None),
])
def test_transient_errors_are_told_apart_raw_and_wrapped(error, kind):
    assert retry.transient_kind(error) == kind
    wrapped = sa.exc.DBAPIError.instance("SELECT 1", {}, error, psycopg.Error)
    assert retry.transient_kind(wrapped) == kind


class TableLock:
    """``LOCK TABLE messages`` held by another session until ``release``."""

    def __init__(self, engine) -> None:
        self.conn = engine.connect()
        self.conn.exec_driver_sql("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")

    def waiters(self) -> list[int]:
        """Backends waiting for the lock."""
        return list(self.conn.exec_driver_sql(
            "SELECT pid FROM pg_locks WHERE NOT granted AND relation = 'messages'::regclass"
        ).scalars())

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def _stream(publisher) -> None:
    publisher.send([(m.topic(f"pi-{i % 3}"), m.telemetry(f"pi-{i % 3}", i)) for i in range(N)])


def _check_all_stored_none_quarantined(engine) -> None:
    wait_until(lambda: count(engine, "SELECT count(*) FROM messages") == N, 60,
               f"all {N} messages stored")
    assert count(engine, "SELECT count(*) FROM quarantine") == 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_lock_timeout_in_copy_is_retried_not_quarantined(db_url, engine, make_cfg, publisher):
    url = db_url + "%20-clock_timeout%3D200"  # the worker's session gives up a wait at 0.2 s
    worker_engine = open_store(url)
    lock = TableLock(engine)
    worker = ThreadWorker(make_cfg(db=url), worker_engine).start()
    try:
        _stream(publisher)
        threading.Event().wait(2.0)  # the worker times out on the lock, more than once
        lock.release()
        _check_all_stored_none_quarantined(engine)
    finally:
        worker.stop()
        worker_engine.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_connection_ended_during_copy_is_retried(db_url, engine, make_cfg, publisher):
    lock = TableLock(engine)
    worker = ThreadWorker(make_cfg(), engine).start()
    try:
        _stream(publisher)
        wait_until(lambda: bool(lock.waiters()), 20, "the worker waiting for the table")
        for pid in lock.waiters():
            lock.conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        lock.release()
        _check_all_stored_none_quarantined(engine)
    finally:
        worker.stop()


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_contention_that_never_ends_is_retried_a_bounded_number_of_times(db_url, engine,
                                                                        make_cfg, publisher):
    url = db_url + "%20-clock_timeout%3D100"
    worker_engine = open_store(url)
    lock = TableLock(engine)
    worker = ThreadWorker(make_cfg(db=url), worker_engine).start()
    try:
        publisher.send([(m.topic("pi-1"), m.telemetry("pi-1", 1))])
        wait_until(lambda: count(engine, "SELECT count(*) FROM quarantine WHERE reason = "
                                         "'store_error'") == 1, 60,
                   "the message quarantined after its retries (the worker not stalled)")
        lock.release()
        publisher.send([(m.topic("pi-1"), m.telemetry("pi-1", 2))])
        wait_until(lambda: count(engine, "SELECT count(*) FROM messages") == 1, 30,
                   "the next message stored")
    finally:
        worker.stop()
        worker_engine.dispose()
