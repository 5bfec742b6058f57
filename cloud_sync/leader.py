"""Leader election: which ``cloud serve`` instance runs the once-per-deployment jobs.

PostgreSQL: ``pg_try_advisory_lock`` on a dedicated connection. The lock lives as long
as that session, so a crashed or partitioned leader loses it when PostgreSQL drops the
connection; ``renew`` checks the connection is alive and otherwise steps down.
SQLite (one host): the ``leader_lock`` row, taken when absent, expired or already ours,
with an expiry of ``ttl_s`` renewed every ``ttl_s / 3``; a leader that stops renewing
is replaced after at most ``ttl_s``. Either way two instances never both lead.

A job about to write asks ``confirm()``, which checks the lock on the spot rather than
trusting the last renewal: a leader that was paused (SIGSTOP, a VM freeze) while its
session was ended and another instance took over finds out before it writes.
Connections use TCP keepalives (``store/engine.py``), so a leader whose host dies
loses its session, and the lock, within about a minute.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloud_sync.store import transaction
from cloud_sync.store.schema import leader_lock
from cloud_sync.store.writes import UPSERTS

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(f"edgekit:{name}".encode()).digest()[:8], "big",
                          signed=True)


def default_holder() -> str:
    """host:pid, so an operator can see who leads."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _AdvisoryLock:
    """PostgreSQL: a session advisory lock on a connection kept for it. Advisory locks
    belong to the whole database, so the key names the deployment's schema too: two
    deployments in two schemas of one database each elect their own leader."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine, self.name = engine, name
        self.conn: Connection | None = None

    def try_acquire(self) -> bool:
        try:
            if self.conn is None:
                self.conn = self.engine.connect()
            schema = self.conn.execute(sa.text("SELECT current_schema()")).scalar()
            got = self.conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"),
                                    {"k": lock_key(f"{schema}:{self.name}")}).scalar()
            self.conn.commit()
        except sa.exc.SQLAlchemyError:
            self._drop()
            raise
        return bool(got)

    def renew(self) -> bool:
        try:
            self.conn.execute(sa.text("SELECT 1"))
            self.conn.commit()
            return True
        except sa.exc.SQLAlchemyError:
            self._drop()
            return False

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))
                self.conn.commit()
            except sa.exc.SQLAlchemyError:
                pass
            self._drop()

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.invalidate()
            conn.close()


class _LeaseRow:
    """SQLite: a row in ``leader_lock`` with an expiry, renewed while we lead."""

    def __init__(self, engine: Engine, name: str, holder: str, ttl_s: float) -> None:
        self.engine, self.name, self.holder, self.ttl_s = engine, name, holder, ttl_s

    def try_acquire(self) -> bool:
        now = time.time()
        with transaction(self.engine) as conn:
            row = conn.execute(sa.select(leader_lock).where(leader_lock.c.name == self.name)
                               ).first()
            if row is not None and row.holder != self.holder and row.expires_at > now:
                return False
            stmt = UPSERTS[conn.dialect.name](leader_lock).values(
                name=self.name, holder=self.holder, acquired_at=now, expires_at=now + self.ttl_s)
            conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={
                "holder": self.holder, "expires_at": now + self.ttl_s,
                "acquired_at": row.acquired_at if row is not None and row.holder == self.holder
                else now}))
        return True

    def renew(self) -> bool:
        try:
            return self.try_acquire()
        except sa.exc.SQLAlchemyError:
            return False

    def release(self) -> None:
        try:
            with transaction(self.engine) as conn:
                conn.execute(sa.delete(leader_lock).where(leader_lock.c.name == self.name,
                                                          leader_lock.c.holder == self.holder))
        except sa.exc.SQLAlchemyError:
            pass


class Leadership:
    """Keeps trying to lead ``name``; ``is_leader`` says whether we do now.

    ``run(stop)`` (a thread) acquires or renews every ``ttl_s / 3`` and calls
    ``on_change(True/False)`` when leadership starts or ends.
    """

    def __init__(self, engine: Engine, name: str = "controller", holder: str | None = None,
                 ttl_s: float = 15.0, on_change: Callable[[bool], None] | None = None) -> None:
        self.holder = holder or default_holder()
        self.ttl_s, self.on_change = ttl_s, on_change
        self._lock = (_AdvisoryLock(engine, name) if engine.dialect.name == "postgresql"
                      else _LeaseRow(engine, name, self.holder, ttl_s))
        self._leader = threading.Event()
        self._guard = threading.RLock()  # one lock connection, used by several threads

    @property
    def is_leader(self) -> bool:
        """True while this instance holds the lock."""
        return self._leader.is_set()

    def confirm(self) -> bool:
        """Whether we lead, checked with the database now (for a job about to write);
        steps down if the lock is gone. Never acquires.

        The check runs on the lock's connection while the job writes on another, so a
        leader paused between the two (a stopped process, a long GC) can write once more
        after it lost the lock; the jobs' unique keys and conditional updates make that
        one write harmless (a duplicate is ignored, a stale update matches no row)."""
        with self._guard:
            return self.is_leader and self.step()

    def step(self) -> bool:
        """One attempt: acquire (or renew) the lock; returns whether we lead now."""
        with self._guard:
            return self._step()

    def _step(self) -> bool:
        try:
            now_leader = self._lock.renew() if self.is_leader else self._lock.try_acquire()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("leader election: %s", str(exc).splitlines()[0])
            now_leader = False
        if now_leader != self.is_leader:
            (self._leader.set if now_leader else self._leader.clear)()
            log.info("%s %s the leader", self.holder, "is now" if now_leader else "is no longer")
            if self.on_change is not None:
                self.on_change(now_leader)
        return now_leader

    def run(self, stop: threading.Event) -> None:
        """Try or renew until ``stop``; then release."""
        try:
            while not stop.is_set():
                self.step()
                stop.wait(self.ttl_s / 3)
        finally:
            self.release()

    def release(self) -> None:
        """Give the lock up (if held)."""
        with self._guard:
            self._lock.release()
            self._leader.clear()
