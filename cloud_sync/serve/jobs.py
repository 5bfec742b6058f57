"""Background housekeeping: retention and device state from silence (on the leader only).

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

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloud_sync.config import CloudConfig
from cloud_sync.store import apply_retention, transaction
from cloud_sync.store.schema import devices

log = logging.getLogger(__name__)
LIVE_STATES = ("online", "degraded", "updating")


def mark_silent(conn: Connection, cfg: CloudConfig, now: float) -> dict[str, int]:
    """Apply the silence rule; returns how many devices became stale and offline."""
    ingest = cfg.ingest
    offline_before = now - ingest.offline_after * ingest.telemetry_interval_s
    stale_before = now - ingest.stale_after * ingest.telemetry_interval_s
    offline = conn.execute(sa.update(devices).where(
        devices.c.state.in_((*LIVE_STATES, "stale")), devices.c.last_seen < offline_before)
        .values(state="offline")).rowcount
    stale = conn.execute(sa.update(devices).where(
        devices.c.state.in_(LIVE_STATES), devices.c.last_seen < stale_before)
        .values(state="stale")).rowcount
    return {"stale": stale, "offline": offline}


class Housekeeping:
    """Runs retention every ``retention.interval_s`` and the silence rule every
    ``ingest.state_interval_s`` while ``leading()`` is true."""

    def __init__(self, cfg: CloudConfig, engine: Engine, leading: Callable[[], bool]) -> None:
        self.cfg, self.engine, self.leading = cfg, engine, leading
        self.jobs: list[tuple[float, Callable[[Connection, float], object], str]] = [
            (cfg.ingest.state_interval_s, lambda c, now: mark_silent(c, cfg, now), "silence"),
            (cfg.retention.interval_s, lambda c, now: apply_retention(c, cfg.retention, now),
             "retention")]

    def run(self, stop: threading.Event) -> None:
        """Run each job when due until ``stop``; a failing job is logged and retried later."""
        due = [time.monotonic()] * len(self.jobs)
        while not stop.wait(0.5):
            for i, (every, job, name) in enumerate(self.jobs):
                if time.monotonic() >= due[i]:
                    due[i] = time.monotonic() + every
                    if self.leading():
                        self._run(job, name)

    def _run(self, job: Callable[[Connection, float], object], name: str) -> None:
        try:
            with transaction(self.engine) as conn:
                done = job(conn, time.time())
            log.debug("%s: %s", name, done)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("%s job failed: %s", name, str(exc).splitlines()[0])
