"""One ingest worker: an MQTT client feeding a batcher thread that writes to the store.

Messages wait in a queue until a batch is full (``batch_size``) or its oldest message is
``batch_age_s`` old; then the batch is judged (``classify``), written in one transaction
(``batch.write_batch``), committed, and only then acknowledged to the broker. A
transient database error (unreachable, deadlock, lock or statement timeout; see
``retry.py``) retries the same batch with backoff while the broker keeps the
unacknowledged messages; any other failure splits the batch until the one message the
store refuses is quarantined as ``store_error``, so one bad message never stops a worker.
If the writer thread dies all the same, the worker stops and ``run`` raises
``WriterDied``: the process exits non-zero and its supervisor starts a fresh one.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence

from sqlalchemy.engine import Engine

from cloud_sync.config import CloudConfig
from cloud_sync.ingest import retry
from cloud_sync.ingest.batch import write_batch
from cloud_sync.ingest.classify import (
    BAD_FIELDS,
    STORE_ERROR,
    Accepted,
    Received,
    Rejected,
    classify,
)
from cloud_sync.ingest.mqtt import IngestClient
from cloud_sync.store import transaction
from edge_agent.broker_config import BrokerConfig
from edge_agent.errors import first_line
from edge_agent.mqtt_link import backoff_delay

log = logging.getLogger(__name__)
POLL_S = 0.1
Judged = Accepted | Rejected


GC_THRESHOLDS = (10_000, 50, 1000)


class WriterDied(RuntimeError):
    """The writer thread ended on an error; nothing more would be stored or acknowledged."""


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for this process's hot path.

    Every message allocates a few dozen dicts and lists (its decoded JSON, its typed
    record, its row) that reference counting frees; none form cycles. With the default
    thresholds the collector still runs every 700 allocations and walks every object
    the process holds (SQLAlchemy, paho, the modules), about a third of the time spent
    judging a message. ``gc.freeze()`` moves what start-up made out of its sight, and
    higher thresholds run it a few times a second, not thousands. Measured on one
    worker with the store stubbed out: 4,600 -> 5,600 messages/s.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def take_batch(inbox: queue.Queue, size: int, age_s: float, poll_s: float = POLL_S
               ) -> list[Received]:
    """Up to ``size`` messages: waits ``poll_s`` for the first, then at most ``age_s``."""
    try:
        batch = [inbox.get(timeout=poll_s)]
    except queue.Empty:
        return []
    deadline = time.monotonic() + age_s
    while len(batch) < size:
        left = deadline - time.monotonic()
        try:
            batch.append(inbox.get_nowait() if left <= 0 else inbox.get(timeout=left))
        except queue.Empty:
            break
    return batch


class IngestWorker:
    """Receive, batch, store, acknowledge; ``run`` until ``stop()``."""

    def __init__(self, cfg: CloudConfig, engine: Engine, broker: BrokerConfig,
                 client_id: str) -> None:
        self.cfg, self.engine = cfg, engine
        self.inbox: queue.Queue[Received] = queue.Queue()
        settings = cfg.ingest
        self.client = IngestClient(broker, client_id, settings.group, settings.receive_maximum,
                                   settings.session_expiry_s, self.inbox.put,
                                   fast_paths=settings.fast_paths)
        self.totals: Counter = Counter()
        self._stop = threading.Event()
        self._writer_done = threading.Event()
        self._writer_error: BaseException | None = None

    def stop(self) -> None:
        """Finish the batch being written, acknowledge it, disconnect (session kept)."""
        self._stop.set()

    def run(self) -> None:
        """Serve until stopped; the MQTT loop runs on the calling thread."""
        writer = threading.Thread(target=self._write_loop, name="edgekit-ingest-writer",
                                  daemon=True)
        writer.start()
        try:
            self.client.run(self._stop, until=self._writer_done.is_set)
        finally:
            self._stop.set()
            writer.join(30)
        log.info("ingest %s stopped: %s", self.client.client_id, dict(self.totals))
        if self._writer_error is not None:
            raise WriterDied(f"ingest writer thread died: {describe(self._writer_error)}")

    def _write_loop(self) -> None:
        settings = self.cfg.ingest
        try:
            while not self._stop.is_set():
                batch = take_batch(self.inbox, settings.batch_size, settings.batch_age_s)
                if batch:
                    self._store(batch)
                    self.client.ack(batch)
        except BaseException as exc:  # reported by run(), so the process exits
            log.critical("ingest writer thread died; stopping the worker", exc_info=True)
            self._writer_error = exc
            self._stop.set()
        finally:
            self._writer_done.set()

    def _store(self, batch: list[Received]) -> None:
        compiled = self.cfg.ingest.fast_paths
        judged = [judge(r, compiled) for r in batch]
        attempt = 0
        while True:
            try:
                self.totals.update(write_resilient(self.engine, judged, self.cfg,
                                                   self.client.client_id))
                return
            except retry.StoreUnavailable as exc:
                delay = backoff_delay(attempt, *retry.BACKOFF)
                attempt += 1
                log.warning("ingest: store unavailable (%s); retrying %d messages in %.1f s",
                            describe(exc.__cause__ or exc), len(batch), delay)
                time.sleep(delay)


def judge(received: Received, compiled: bool = True) -> Judged:
    """``classify``, and a quarantine (never an exception) should it fail on a payload."""
    try:
        return classify(received, compiled)
    except Exception as exc:  # a bug a payload triggers must not stop the writer
        log.error("ingest: cannot judge a message on %s", received.topic, exc_info=True)
        return Rejected(received, BAD_FIELDS, f"cannot be judged: {describe(exc)}"[:200])


def describe(exc: BaseException) -> str:
    """The first line of an error, or its type if even that fails (a deep repr)."""
    try:
        return first_line(exc)
    except Exception:
        return type(exc).__name__


def write_resilient(engine: Engine, judged: Sequence[Judged], cfg: CloudConfig,
                    writer: str = "") -> Counter:
    """Write in one transaction, retrying contention (``retry.CONTENTION``) a few times;
    on any other failure split the batch, and quarantine a single message the store
    refuses. ``retry.StoreUnavailable`` propagates: the caller retries the whole batch.
    ``writer``: this worker's client id (its part of the fleet windows)."""
    attempt = 0
    while True:
        try:
            with transaction(engine) as conn:
                return write_batch(conn, judged, cfg, time.time(), writer).counts
        except Exception as exc:  # a bad message (or a bug it triggers) must not stop the worker
            kind = retry.transient_kind(exc)
            if kind == retry.UNAVAILABLE:
                raise retry.StoreUnavailable(describe(exc)) from exc
            if kind != retry.CONTENTION or attempt >= retry.CONTENTION_RETRIES:
                return _split(engine, judged, cfg, exc, writer)
            delay = backoff_delay(attempt, *retry.BACKOFF)
            log.warning("ingest: store contention (%s); retrying %d messages in %.1f s",
                        describe(exc), len(judged), delay)
        time.sleep(delay)
        attempt += 1


def _split(engine: Engine, judged: Sequence[Judged], cfg: CloudConfig,
           exc: BaseException, writer: str) -> Counter:
    if len(judged) == 1:
        item = judged[0]
        log.warning("ingest: store refused a message on %s: %s", item.received.topic,
                    describe(exc))
        return write_resilient(engine, [_refused(item, exc)], cfg, writer) \
            if not _is_store_error(item) else Counter({"lost:store_error": 1})
    half = len(judged) // 2
    return write_resilient(engine, judged[:half], cfg, writer) + \
        write_resilient(engine, judged[half:], cfg, writer)


def _refused(item: Judged, exc: BaseException) -> Rejected:
    return Rejected(item.received, STORE_ERROR, describe(exc)[:200], item.device_id)


def _is_store_error(item: Judged) -> bool:
    return isinstance(item, Rejected) and item.reason == STORE_ERROR
