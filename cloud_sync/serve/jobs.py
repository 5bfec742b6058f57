"""Background jobs on the leader only: retention, device state from silence, and (every
``triggers.interval_s``) the drift controller step and the action outbox.

Silence rule: with ``ingest.telemetry_interval_s`` = T, a device that is ``online``,
``degraded`` or ``updating`` and has not been heard from (``last_seen``, any message)
for ``stale_after`` x T becomes ``stale``; one silent for ``offline_after`` x T becomes
``offline``. Any later message brings a ``stale``/``offline`` device back ``online``
(ingest), and a status message sets the state it reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloud_sync.config import CloudConfig
from cloud_sync.store import transaction
from cloud_sync.store.retention import RetentionJob
from cloud_sync.store.schema import devices
from edge_agent.errors import EdgekitError

Job = Callable[[Engine, float], object]

log = logging.getLogger(__name__)
LIVE_STATES = ("online", "degraded", "updating")


def mark_silent(conn: Connection, cfg: CloudConfig, now: float) -> dict[str, int]:
    """Apply the silence rule; returns how many devices became stale and offline."""
    ingest = cfg.ingest
    offline_before = now - ingest.offline_after * ingest.telemetry_interval_s
    stale_before = now - ingest.stale_after * ingest.telemetry_interval_s
    offline = _set_state(conn, sa.and_(devices.c.state.in_((*LIVE_STATES, "stale")),
                                       devices.c.last_seen < offline_before), "offline")
    stale = _set_state(conn, sa.and_(devices.c.state.in_(LIVE_STATES),
                                     devices.c.last_seen < stale_before), "stale")
    return {"stale": stale, "offline": offline}


ID_ORDER = {"postgresql": 'C'}  # the collation of Python's string order, ingest's lock order


def _set_state(conn: Connection, where: Any, state: str) -> int:
    """Set ``state`` on the devices matching ``where``, locking their rows first in the
    order an ingest batch locks devices (by id), so the two never deadlock."""
    query = sa.select(devices.c.id).where(where)
    if conn.dialect.name in ID_ORDER:  # SQLite has one writer: no lock order to keep
        query = query.order_by(devices.c.id.collate(ID_ORDER[conn.dialect.name]))
    ids = list(conn.execute(query.with_for_update()).scalars())
    for i in range(0, len(ids), 1000):
        conn.execute(sa.update(devices).where(devices.c.id.in_(ids[i:i + 1000]))
                     .values(state=state))
    return len(ids)


class Housekeeping:
    """Runs each job when due (retention every ``retention.interval_s``, the silence rule
    every ``ingest.state_interval_s``; or the ``jobs`` given) while ``leading()`` is true.
    A job that reports more work waiting (the drift step's device windows) runs again
    within ``MORE_AFTER_S``.

    ``leading`` is asked right before each job runs, so it should check with the
    database (``Leadership.confirm``), not a flag set at the last renewal. When it says
    yes after a no (or for the first time), this process has (re)gained leadership:
    every job with a ``reset()`` (``RetentionJob``) forgets its earlier passes first,
    since another instance may have led in between. It is asked each time a job is due
    (the silence rule's every few seconds), so only a loss and a regain both between two
    asks go unseen."""

    def __init__(self, cfg: CloudConfig, engine: Engine, leading: Callable[[], bool],
                 jobs: list[tuple[float, Job, str]] | None = None) -> None:
        self.cfg, self.engine, self.leading = cfg, engine, leading
        self.jobs = housekeeping_jobs(cfg) if jobs is None else jobs
        self.led = False  # what ``leading()`` said last

    def run(self, stop: threading.Event) -> None:
        """Run each job when due until ``stop``; a failing job is logged and retried later."""
        due = [time.monotonic()] * len(self.jobs)
        while not stop.wait(0.5):
            for i, (every, job, name) in enumerate(self.jobs):
                if time.monotonic() >= due[i]:
                    due[i] = time.monotonic() + every
                    if self.check_leading() and _more(self._run(job, name)):
                        due[i] = time.monotonic() + min(every, MORE_AFTER_S)

    def check_leading(self) -> bool:
        """Ask ``leading()``; on a yes after a no, reset the jobs that keep state."""
        leading = self.leading()
        if leading and not self.led:
            for _every, job, _name in self.jobs:
                reset = getattr(job, "reset", None)
                if callable(reset):
                    reset()
        self.led = leading
        return leading

    def _run(self, job: Job, name: str) -> object:
        try:
            done = job(self.engine, time.time())
            log.debug("%s: %s", name, done)
            return done
        except (sa.exc.SQLAlchemyError, EdgekitError) as exc:
            log.warning("%s job failed: %s", name, str(exc).splitlines()[0])
            return None


MORE_AFTER_S = 1.0  # a job that reports more work waiting (``{"more": true}``) runs again then


def _more(done: object) -> bool:
    return isinstance(done, dict) and bool(done.get("more"))


def _in_transaction(job: Callable[[Connection, float], object]) -> Job:
    def run(engine: Engine, now: float) -> object:
        with transaction(engine) as conn:
            return job(conn, now)
    return run


def housekeeping_jobs(cfg: CloudConfig) -> list[tuple[float, Job, str]]:
    """The silence rule and retention."""
    return [(cfg.ingest.state_interval_s,
             _in_transaction(lambda c, now: mark_silent(c, cfg, now)), "silence"),
            (cfg.retention.interval_s,  # batches of short transactions of its own
             RetentionJob(cfg.retention, cfg.data_dir / "exports"), "retention")]


def trigger_jobs(cfg: CloudConfig) -> list[tuple[float, Job, str]]:
    """The drift controller step every ``triggers.interval_s`` (none when
    ``triggers.enabled`` is false)."""
    if not cfg.triggers.enabled:
        return []
    from cloud_sync.triggers.controller import drift_job

    return [(cfg.triggers.interval_s, drift_job(cfg), "drift-controller")]


def action_jobs(cfg: CloudConfig) -> list[tuple[float, Job, str]]:
    """The triggers' action outbox every ``triggers.interval_s``; on a thread of its own,
    so a retraining command that runs for minutes never delays drift scoring (or
    anything else)."""
    if not cfg.triggers.enabled:
        return []
    from cloud_sync.actions.worker import run_due_actions

    return [(cfg.triggers.interval_s, lambda engine, now: dict(run_due_actions(engine, cfg, now)),
             "actions")]


def rollout_jobs(cfg: CloudConfig) -> list[tuple[float, Job, str]]:
    """The rollout controller step every ``rollouts.interval_s`` (none when disabled)."""
    if not cfg.rollouts.enabled:
        return []
    from cloud_sync.rollouts.job import rollout_job

    return [(cfg.rollouts.interval_s, rollout_job(cfg), "rollouts")]
