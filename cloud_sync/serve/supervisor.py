"""Ingest worker processes: start N, restart any that dies (with backoff), stop them all.

Each worker is ``python -m cloud_sync.ingest --slot I --config-stdin``, so slot I always
has the same MQTT client id (and broker session). The config and the MQTT password go
to the worker through its stdin and its environment holds no secret
(``ingest/handover.py``): no other local user can read them from ``/proc``. Workers get
``PR_SET_PDEATHSIG`` (Linux): if ``serve`` itself is killed, they get SIGTERM too,
so no orphan keeps a session. A worker that ran for ``HEALTHY_S`` has its backoff reset.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from cloud_sync.config import CloudConfig
from cloud_sync.ingest import handover
from edge_agent.mqtt_link import backoff_delay

log = logging.getLogger(__name__)
HEALTHY_S = 30.0
STOP_TIMEOUT_S = 20.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Slot:
    """One worker slot: its process, when it started, and how often it failed in a row."""

    index: int
    proc: subprocess.Popen | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    restarts: int = field(default=0)


class WorkerSupervisor:
    """Keeps ``cfg.workers`` ingest processes running until ``stop``."""

    def __init__(self, cfg: CloudConfig, client_id_prefix: str | None = None,
                 backoff: tuple[float, float] = (0.5, 30.0)) -> None:
        self.cfg, self.prefix, self.backoff = cfg, client_id_prefix, backoff
        self.slots = [Slot(i) for i in range(cfg.workers)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def command(self, slot: int) -> list[str]:
        """The command line of one worker."""
        cmd = [sys.executable, "-m", "cloud_sync.ingest", "--slot", str(slot), "--config-stdin"]
        return cmd + (["--client-id-prefix", self.prefix] if self.prefix else [])

    def start(self) -> None:
        """Start every worker and the watching thread."""
        for slot in self.slots:
            self._spawn(slot)
        self._thread = threading.Thread(target=self._watch, name="edgekit-supervisor",
                                        daemon=True)
        self._thread.start()

    def pids(self) -> list[int]:
        """PIDs of the workers running now."""
        with self._lock:
            return [s.proc.pid for s in self.slots if s.proc and s.proc.poll() is None]

    def _spawn(self, slot: Slot) -> None:
        slot.proc = subprocess.Popen(self.command(slot.index), stdin=subprocess.PIPE,
                                     env=handover.worker_env(self.cfg, os.environ),
                                     preexec_fn=_die_with_parent)
        slot.started = time.monotonic()
        try:
            with slot.proc.stdin:
                slot.proc.stdin.write(handover.encode(self.cfg, os.environ))
        except OSError as exc:  # it died at once; _watch restarts it
            log.warning("ingest worker %d did not take its config: %s", slot.index, exc)
        log.info("ingest worker %d started (pid %d)", slot.index, slot.proc.pid)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                for slot in self.slots:
                    self._check(slot)

    def _check(self, slot: Slot) -> None:
        now = time.monotonic()
        if slot.proc is not None and slot.proc.poll() is not None:
            ran = now - slot.started
            slot.failures = 0 if ran >= HEALTHY_S else slot.failures + 1
            delay = backoff_delay(slot.failures, *self.backoff) if slot.failures else 0.0
            log.warning("ingest worker %d (pid %d) exited with %s after %.1f s; restarting in "
                        "%.1f s", slot.index, slot.proc.pid, slot.proc.returncode, ran, delay)
            slot.proc, slot.restart_at = None, now + delay
        if slot.proc is None and now >= slot.restart_at and not self._stop.is_set():
            slot.restarts += 1
            self._spawn(slot)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every worker (each finishes its batch), SIGKILL any still there after
        ``timeout``; waits for all."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        procs = [s.proc for s in self.slots if s.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("ingest worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
