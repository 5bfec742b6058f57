"""The cloud at fleet scale: a live simulated fleet over an hour of history, 2 serves.

N simulated devices (default 50,000) send one telemetry per 30 s into PostgreSQL through
2 ``cloud serve`` processes, on top of an hour of stored history per device.

Method, in order (a fresh PostgreSQL schema, dropped at the end):

1. Registry: N device rows (one fleet, ``sim-model`` 1, profile x86-64) inserted in bulk,
   and two published versions of ``sim-model`` whose manifests carry the simulator's
   reference statistics (1: what devices run, the drift reference; 2: the rollout's).
2. History: ``--history-s`` of telemetry for every device, made by the simulator's own
   message builder (``SimDevice.telemetry``) with back-dated ``ts``, judged by ingest's
   ``classify`` and turned into rows by ``store.rows.message_row`` as ingest does, then
   COPYed in chunks of 20,000 (``store.writes.insert_ignoring_duplicates``) by several
   processes. History rows carry incarnation ``history`` (the live devices' seqs start at
   0 again, as after a re-image). Where ``cloud_sync.store.windows.rebuild`` exists it
   then fills the per-device window aggregates for that span. ``ANALYZE`` follows, as
   autovacuum would within a minute.
3. Live: a private mosquitto (anonymous; fd limit raised), two ``cloud serve`` subprocesses
   (1 ingest worker each, own client-id prefix and HTTP port; their drift and rollout jobs
   off, as this script times those jobs itself), and ``fleet sim`` (``run_fleet``) with N
   devices for ``--duration`` s. A poller reads new rows every 0.1 s: latency = poll time -
   device ts (resolution 0.1 s); steady state starts a warm-up after the first live row
   (the connect wave's retained statuses) and ends 5 s before the fleet stops (or at the
   failover kill).
4. While the fleet publishes, after the warm-up, one after another: a rollout of version
   2 over the fleet with a 1 % canary, its controller job (``rollout_job``, commands
   published) stepped every 2 s, the canary's answers (probation, committed) published
   as devices would once its commands are out, so the steps cover pending, canary (send,
   wait, collect) and baking (health over the fleet's telemetry); the drift controller's
   job (``drift_job(cfg)(engine, now)``) up to ``--drift-runs`` times within the live
   phase left; then ``ANALYZE`` (``drift_scores`` was empty at the last one; autovacuum
   would have run it) and the dashboard's pages (``benchmarks/dashboard.py``'s, through
   the FastAPI app in process, median of ``--page-runs``). With ``--failover``, halfway
   through the steady phase, on a thread: the leading serve is SIGKILLed, the time until
   the other leads is taken, and the killed one is started again with its client ids (as
   its supervisor would), so the broker hands its worker's queued share to it.
5. After the fleet stops and the store drains: lost = telemetry published - distinct
   (device, seq) stored, doubled = rows stored - distinct; bytes per device-day =
   ``pg_total_relation_size`` over the ``messages`` partition tree after VACUUM, over the
   device-days of telemetry stored (rows x interval / 86,400).

    python benchmarks/cloud_scale.py [--devices 50000] [--interval 30] [--history-s 3600]
        [--duration 300] [--failover] [--no-write]
    smoke: --devices 2000 --history-s 600 --duration 60 --no-write
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import json
import logging
import multiprocessing
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from benchmarks import dashboard  # noqa: E402
from benchmarks.cloud_ingest import LatencyPoller  # noqa: E402
from benchmarks.device_day import _pg_bytes  # noqa: E402
from benchmarks.results_file import machine, write_section  # noqa: E402
from cloud_sync.config import CloudConfig  # noqa: E402
from cloud_sync.ingest.classify import Accepted, Received, classify  # noqa: E402
from cloud_sync.sim import SimSettings, run_fleet  # noqa: E402
from cloud_sync.sim.device import SimDevice  # noqa: E402
from cloud_sync.sim.shard import _model  # noqa: E402
from cloud_sync.store import create_engine, open_store, transaction  # noqa: E402
from cloud_sync.store.partitions import DAY, create_day, day_of, partitioned  # noqa: E402
from cloud_sync.store.rows import JsonDoc, message_row  # noqa: E402
from cloud_sync.store.schema import devices, messages, rollout_devices, rollouts  # noqa: E402
from cloud_sync.store.writes import MESSAGE_KEYS, insert_ignoring_duplicates  # noqa: E402
from edge_agent import protocol  # noqa: E402
from edgekit.local_broker import free_port  # noqa: E402
from tests.brokers import Mosquitto, Subscriber  # noqa: E402
from tests.cloud_sync.dashboard.conftest import TOKEN  # noqa: E402
from tests.cloud_sync.ingest.conftest import Publisher, wait_subscribed  # noqa: E402
from tests.cloud_sync.test_failover import TAKEOVER_S, _leader  # noqa: E402
from tests.cloud_sync.triggers.helpers import publish_reference  # noqa: E402
from tests.databases import _pg_admin_url, _pg_schema_url  # noqa: E402

FLEET, PREFIX = "scale", "dev-"
HISTORY = "history"  # the incarnation of the back-filled rows
NEW_VERSION = "2"
CHUNK_ROWS = 20_000
INFERENCES = 200
TARGETS = {"store_p95_s": 1.0, "drift_s": 2.0, "rollout_s": 0.5, "page_ms": dashboard.TARGET_MS}
ROLLOUT_INTERVAL_S = 2.0  # the rollout job's default interval (rollouts.interval_s)
END_MARGIN_S = 5.0  # steady state ends this long before the fleet stops
PAGES_RESERVE_S = 15.0  # of the live phase, kept for the pages after the drift runs


def device_id(i: int) -> str:
    """The id ``fleet sim`` gives device ``i`` (``device_prefix`` + 5 digits)."""
    return f"{PREFIX}{i:05d}"


def raise_fd_limit(devices: int) -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by mosquitto and the simulator's
    processes: one socket per device in each); warns when that is still too few."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else max(soft, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want != resource.RLIM_INFINITY and want < devices + 2048:
        print(f"warning: open-file limit {want} < {devices + 2048}: mosquitto cannot hold "
              f"{devices:,} connections; raise the hard limit (ulimit -Hn)", flush=True)
    return want


# -- the registry and the published model ------------------------------------------------


def register_devices(engine, count: int, since: float, now: float) -> None:
    """``count`` device rows of the fleet, online, on ``sim-model`` 1 (bulk inserts)."""
    model = _model(SimSettings(broker="mqtt://127.0.0.1:1")).name
    for first in range(0, count, CHUNK_ROWS):
        with transaction(engine) as conn:
            conn.execute(sa.insert(devices), [
                {"id": device_id(i), "fleet": FLEET, "profile": "x86-64", "model_name": model,
                 "model_version": "1", "agent_version": "sim", "state": "online",
                 "registered_by": "cli", "created_at": since, "first_seen": since,
                 "last_seen": now} for i in range(first, min(count, first + CHUNK_ROWS))])


def publish_models(engine) -> str:
    """Versions 1 and 2 of the simulator's model, each with an x86-64 bundle whose manifest
    carries the simulator's reference statistics; returns the model's name."""
    model = _model(SimSettings(broker="mqtt://127.0.0.1:1"))
    with transaction(engine) as conn:
        for version in (model.version, NEW_VERSION):
            publish_reference(conn, model.name, version, profile=model.profile,
                              reference=model.ref.to_dict())
    return model.name


# -- back-filled history -------------------------------------------------------------------


def ensure_partitions(engine, start: float, end: float) -> None:
    """Day partitions of ``messages`` for every day of the history (migration makes only
    today's and the next)."""
    with engine.begin() as conn:
        if partitioned(conn):
            for day in range(day_of(start), day_of(end) + DAY, DAY):
                create_day(conn, day)


def _history_rows(sim: SimDevice, rng, interval: float, start: float, end: float) -> list[dict]:
    """One device's telemetry from ``start`` to ``end`` at a random phase, as ingest would
    store it (classify, then ``message_row``)."""
    rows = []
    topic = sim.topic(protocol.TELEMETRY)
    for seq, ts in enumerate(np.arange(start + rng.uniform(0, interval), end, interval)):
        doc = json.loads(sim.telemetry(interval, INFERENCES))
        doc.update(ts=float(ts), seq=seq, incarnation=HISTORY)
        text = json.dumps(doc, separators=(",", ":"))
        received_at = float(ts) + rng.uniform(0.05, 0.3)
        judged = classify(Received(topic, text.encode(), received_at))
        if not isinstance(judged, Accepted):
            raise RuntimeError(f"ingest refuses the simulator's telemetry: {judged.detail}")
        rows.append(message_row(judged.fleet, judged.kind, judged.message, received_at,
                                JsonDoc(judged.doc, text)))
    return rows


_ENGINE = None  # one per prefill process


def _prefill_block(url: str, first: int, count: int, interval: float, start: float,
                   end: float) -> int:
    """Devices ``first``..``first + count - 1``: their history, COPYed in one transaction
    (a block holds about ``CHUNK_ROWS`` rows); returns the rows inserted."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = create_engine(url)
    model = _model(SimSettings(broker="mqtt://127.0.0.1:1"))
    rows = []
    for i in range(first, first + count):
        rng = np.random.default_rng(1_000_003 + i)
        rows += _history_rows(SimDevice(device_id(i), FLEET, model, rng), rng, interval,
                              start, end)
    with transaction(_ENGINE) as conn:
        return insert_ignoring_duplicates(conn, messages, rows,
                                          MESSAGE_KEYS[conn.dialect.name])


def prefill(url: str, count: int, interval: float, start: float, end: float,
            processes: int) -> int:
    """Every device's history in ``processes`` processes; returns the rows stored."""
    per_device = max(1, round((end - start) / interval))
    size = max(1, CHUNK_ROWS // per_device)
    blocks = [(url, first, min(size, count - first), interval, start, end)
              for first in range(0, count, size)]
    began, stored = time.monotonic(), 0
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        for i, n in enumerate(pool.starmap(_prefill_block, blocks, chunksize=1), 1):
            stored += n
            if i % max(1, len(blocks) // 10) == 0:
                print(f"  history: {i}/{len(blocks)} blocks, {stored:,} rows, "
                      f"{time.monotonic() - began:.0f} s", flush=True)
    return stored


def rebuild_windows(engine, cfg: CloudConfig, start: float, end: float) -> str:
    """``cloud_sync.store.windows.rebuild`` over the history where the module has it (the
    per-device window aggregates ingest maintains); which path was taken, in words."""
    if importlib.util.find_spec("cloud_sync.store.windows") is None:
        return "no cloud_sync.store.windows: drift reads raw telemetry"
    rebuild = getattr(importlib.import_module("cloud_sync.store.windows"), "rebuild", None)
    if not callable(rebuild):
        return "cloud_sync.store.windows has no rebuild(): aggregates not back-filled"
    params = inspect.signature(rebuild).parameters
    # rebuild(engine, cfg, start, end), or (engine, sizes, start, end, now) with sizes the
    # fleet -> window_s of its trigger policy, as ingest passes to windows.add
    second = cfg if "cfg" in params else (lambda fleet: cfg.triggers.policy_for(fleet).window_s)
    began = time.monotonic()
    written = rebuild(engine, second, start, end, **({"now": time.time()}
                                                     if "now" in params else {}))
    return (f"windows.rebuild over the history: {written} window rows in "
            f"{time.monotonic() - began:.1f} s")


def analyze(engine) -> None:
    """Planner statistics, as autovacuum gathers them within a minute of a bulk load."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")


# -- the two serves --------------------------------------------------------------------------


class Serves:
    """``cloud serve`` subprocesses on one store, broker and data folder."""

    def __init__(self, folder: Path, db_url: str, broker_url: str, interval: float) -> None:
        from edge_agent.bundle.signing import generate_keypair

        self.folder, self.db_url, self.broker_url = folder, db_url, broker_url
        self.pubkey = generate_keypair(folder / "keys")[1]
        self.config = folder / "serve.json"
        self.config.write_text(json.dumps({  # drift and rollouts: timed by this script
            "ingest": {"telemetry_interval_s": interval},
            "triggers": {"enabled": False}, "rollouts": {"enabled": False}}))
        self.procs: dict[str, subprocess.Popen] = {}
        self.http: dict[str, str] = {}

    def start(self, prefix: str) -> subprocess.Popen:
        """One serve, its workers' MQTT client ids ``<prefix>-<slot>``."""
        self.http[prefix] = f"127.0.0.1:{free_port()}"
        with open(self.folder / f"serve-{prefix}.log", "ab") as log_file:
            self.procs[prefix] = subprocess.Popen(
                [sys.executable, "-m", "edgekit.cli.main", "cloud", "serve", "--db",
                 self.db_url, "--broker", self.broker_url, "--pubkey", str(self.pubkey),
                 "--workers", "1", "--config", str(self.config), "--http", self.http[prefix],
                 "--client-id-prefix", prefix], cwd=ROOT, stdout=subprocess.DEVNULL,
                stderr=log_file, env=dict(os.environ, PYTHONPATH=str(ROOT),
                                          EDGEKIT_API_TOKEN=TOKEN,
                                          EDGEKIT_CLOUD_DIR=str(self.folder / "data")))
        return self.procs[prefix]

    def pids(self) -> list[int]:
        """PIDs of the serves running now."""
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def leader(self, engine) -> str | None:
        """The prefix of the serve holding the leader lock, if any."""
        pid = _leader(engine, self.pids())
        return next((k for k, p in self.procs.items() if p.pid == pid), None)

    def stop_all(self) -> None:
        """SIGTERM every serve (each stops its workers), SIGKILL after 30 s."""
        running = [p for p in self.procs.values() if p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every serve's log (for errors)."""
        return "\n".join(f"--- {p.name}\n" + "\n".join(
            p.read_text(errors="replace").splitlines()[-lines:])
            for p in sorted(self.folder.glob("serve-*.log")))


def wait_for(check, timeout: float, what: str, every: float = 0.2):
    """Poll ``check`` until truthy; RuntimeError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


def start_serves(serves: Serves, engine, broker: Mosquitto) -> None:
    """Both serves up: a leader, and a worker subscribed (a probe device's telemetry, in a
    fleet of its own, is stored)."""
    for prefix in ("A", "B"):
        serves.start(prefix)
    wait_for(lambda: serves.leader(engine), 90, "a leader")
    probe = Publisher(broker.port, client_id="scale-probe")
    try:
        wait_subscribed(engine, probe, timeout=90)
    finally:
        probe.close()


# -- the live fleet ----------------------------------------------------------------------------


class LiveFleet:
    """``run_fleet`` on a thread, the latency poller on another."""

    def __init__(self, engine, settings: SimSettings) -> None:
        self.engine, self.settings = engine, settings
        with engine.connect() as conn:
            self.base_id = conn.execute(sa.select(sa.func.coalesce(
                sa.func.max(messages.c.id), 0))).scalar()
        self.poller = LatencyPoller(engine)
        self.poller.last_id = self.base_id  # the history is not timed
        self.report = None
        self.error: BaseException | None = None
        self._threads = [threading.Thread(target=self.poller.run, daemon=True),
                         threading.Thread(target=self._run, daemon=True)]

    def _run(self) -> None:
        try:
            self.report = run_fleet(self.settings)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def start(self) -> LiveFleet:
        for thread in self._threads:
            thread.start()
        return self

    def first_row(self, timeout: float) -> float:
        """When the poller saw the first live telemetry (wall clock)."""
        wait_for(lambda: self.poller.polled_at or self.error, timeout, "live telemetry")
        if self.error:
            raise self.error
        return self.poller.polled_at[0]

    def running(self) -> bool:
        return self._threads[1].is_alive()

    def join(self) -> None:
        self._threads[1].join()
        if self.error:
            raise self.error

    def stop_polling(self) -> None:
        self.poller.stop.set()
        self._threads[0].join()


def live_counts(engine, base_id: int) -> tuple[int, int]:
    """(rows, distinct (device, seq)) of the fleet's live telemetry."""
    with engine.connect() as conn:
        rows, distinct = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT (device_id, seq)) FROM messages WHERE id > :b "
            "AND kind = 'telemetry' AND fleet = :f AND incarnation = ''"),
            {"b": base_id, "f": FLEET}).one()
    return int(rows), int(distinct)


def drain(engine, base_id: int, published: int, timeout: float = 180.0) -> tuple[int, int]:
    """Wait until every published telemetry is stored, or nothing new for 20 s."""
    deadline, last, changed = time.monotonic() + timeout, -1, time.monotonic()
    while True:
        rows, distinct = live_counts(engine, base_id)
        if distinct != last:
            last, changed = distinct, time.monotonic()
        if distinct >= published or time.monotonic() > deadline \
                or time.monotonic() - changed > 20:
            return rows, distinct
        time.sleep(1.0)


def latency(poller: LatencyPoller, start: float, end: float) -> dict[str, float]:
    """p50/p95/p99 of every live row, and p95/p99 of those polled within [start, end]."""
    lat, at = np.array(poller.latencies), np.array(poller.polled_at)
    steady = lat[(at >= start) & (at <= end)]
    out = {f"p{q}": float(np.percentile(lat, q)) for q in (50, 95, 99)} if lat.size else {}
    for q in (95, 99):
        out[f"steady_p{q}"] = float(np.percentile(steady, q)) if steady.size else float("nan")
    out["steady_rows"] = int(steady.size)
    return out


def after_kill(poller: LatencyPoller, at: float) -> dict[str, float]:
    """p99 and max latency of the rows polled after the failover kill."""
    lat, polled = np.array(poller.latencies), np.array(poller.polled_at)
    later = lat[polled >= at]
    return {"p99": float(np.percentile(later, 99)) if later.size else float("nan"),
            "max": float(later.max()) if later.size else float("nan")}


# -- the timed jobs ---------------------------------------------------------------------------


def timed_runs(fn, runs: int, budget_s: float) -> tuple[list[float], list]:
    """Seconds of each call of ``fn`` (at least one, at most ``runs``, none started once
    ``budget_s`` has gone by) and what each returned."""
    seconds, results, began = [], [], time.monotonic()
    for _ in range(runs):
        if seconds and time.monotonic() - began > budget_s:
            break
        start = time.perf_counter()
        results.append(fn())
        seconds.append(time.perf_counter() - start)
    return seconds, results


def time_drift(engine, cfg: CloudConfig, runs: int, budget_s: float) -> dict:
    """The drift controller's job on the whole store, a few times."""
    from cloud_sync.triggers.controller import drift_job

    job = drift_job(cfg)
    seconds, reports = timed_runs(lambda: job(engine, time.time()), runs, budget_s)
    print(f"  drift: {[round(s, 2) for s in seconds]} s, last {reports[-1]}", flush=True)
    return {"seconds": seconds, "report": reports[-1]}


def _rollout_state(engine, rid: int) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(rollouts.c.state).where(rollouts.c.id == rid)).scalar()


def _answer_canary(engine, rid: int, port: int) -> int:
    """The canary's answers to its update, published as each device would (probation,
    then committed) through ingest; returns how many devices answered."""
    with engine.connect() as conn:
        sent = conn.execute(sa.select(rollout_devices.c.device_id, rollout_devices.c.cmd_id)
                            .where(rollout_devices.c.rollout_id == rid,
                                   rollout_devices.c.state == "sent")).all()
    items = []
    for device, cid in sent:
        for seq, phase in enumerate(("probation", "committed")):
            result = protocol.CommandResult(device_id=device, seq=seq, ts=time.time(),
                                            cmd_id=cid, type="update", ok=True,
                                            detail={"phase": phase})
            items.append((protocol.topic(FLEET, device, protocol.CMD_RESULT), result.to_json()))
    publisher = Publisher(port, client_id="scale-canary")
    try:
        publisher.send(items)
    finally:
        publisher.close()
    wait_for(lambda: _count_results(engine, [d for d, _ in sent]) >= len(items), 60,
             "the canary's answers to be stored")
    return len(sent)


def _count_results(engine, ids: list[str]) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(messages).where(
            messages.c.kind == protocol.CMD_RESULT, messages.c.device_id.in_(ids))).scalar()


def time_rollout(engine, cfg: CloudConfig, model: str, port: int, steps: int) -> dict:
    """A rollout of version 2 over the fleet (1 % canary): its job stepped every 2 s, the
    canary answering once its command is out; seconds and state of each step."""
    from cloud_sync.rollouts.job import rollout_job
    from cloud_sync.rollouts.policy import RolloutPolicy
    from cloud_sync.rollouts.store import create_rollout

    with transaction(engine) as conn:
        rid = create_rollout(conn, model, NEW_VERSION, FLEET, None,
                             RolloutPolicy(canary_percent=1.0), time.time())
    job, timeline, answered = rollout_job(cfg), [], 0
    for _ in range(steps):
        before = _rollout_state(engine, rid)
        start = time.perf_counter()
        report = job(engine, time.time())
        timeline.append({"state": before, "seconds": time.perf_counter() - start,
                         "commands": report["published"]})
        if before == "canary" and not answered and report["published"]:
            answered = _answer_canary(engine, rid, port)
        time.sleep(ROLLOUT_INTERVAL_S)
    end = _rollout_state(engine, rid)
    print(f"  rollout {rid}: {_steps_text(timeline)}; now {end}", flush=True)
    return {"timeline": timeline, "canary": answered, "end": end}


def _steps_text(timeline: list[dict]) -> str:
    """``state seconds (N commands)`` of each step, the state being the one before it."""
    return ", ".join(f"{t['state']} {t['seconds']:.3f} s"
                     + (f" ({t['commands']} commands)" if t["commands"] else "")
                     for t in timeline)


def scale_pages(device: str) -> dict[str, str]:
    """``benchmarks/dashboard.py``'s pages, on this store's fleet and one of its devices."""
    pages = {}
    for name, path in dashboard.PAGES.items():
        if dashboard.WORST in path:
            name = "device page (1 device's telemetry and drift)"
        pages[name] = path.replace(dashboard.WORST, device).replace("fleet-3", FLEET)
    return pages


def time_pages(engine, cfg: CloudConfig, runs: int) -> dict[str, float]:
    """Median ms of each page over ``runs`` requests after one warm-up (in process)."""
    from fastapi.testclient import TestClient

    from cloud_sync.api import create_app

    app = create_app(cfg, engine, api_token=TOKEN)
    with TestClient(app) as client:
        pages = {name: dashboard._median_ms(client, path, runs)
                 for name, path in scale_pages(device_id(1)).items()}
    print("  pages: " + ", ".join(f"{k} {v:.0f} ms" for k, v in pages.items()), flush=True)
    return pages


class Failover:
    """At ``at`` (wall clock), on a thread: SIGKILL the leading serve, time until the other
    leads, then start the killed one again with its client ids (its supervisor's job), so
    the broker hands its worker's queued share to it."""

    def __init__(self, serves: Serves, engine, at: float) -> None:
        self.serves, self.engine, self.at = serves, engine, at
        self.found: dict | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Failover:
        self._thread.start()
        return self

    def _run(self) -> None:
        time.sleep(max(0.0, self.at - time.time()))
        try:
            self.found = self._kill_leader()
        except BaseException as exc:  # reported by result()
            self.error = exc

    def _kill_leader(self) -> dict:
        prefix = self.serves.leader(self.engine)
        killed = self.serves.procs[prefix]
        survivor = next(p.pid for k, p in self.serves.procs.items()
                        if k != prefix and p.poll() is None)
        at = time.time()
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        wait_for(lambda: _leader(self.engine, [survivor]) == survivor, TAKEOVER_S,
                 "the other serve to lead", every=0.1)
        takeover = time.time() - at
        self.serves.start(prefix)
        print(f"  failover: serve {prefix} killed, the other led after {takeover:.1f} s",
              flush=True)
        return {"killed_at": at, "takeover_s": takeover, "killed": prefix}

    def result(self) -> dict:
        """What the kill found (waits for it)."""
        self._thread.join()
        if self.error:
            raise self.error
        return self.found


# -- the run ------------------------------------------------------------------------------------


def build_store(url: str, cfg: CloudConfig, args) -> tuple[object, dict]:
    """Registry, models and history; the engine and what was filled."""
    engine = open_store(url)
    now = time.time()
    start = now - args.history_s
    began = time.monotonic()
    register_devices(engine, args.devices, start, now)
    model = publish_models(engine)
    ensure_partitions(engine, start, now)
    print(f"registry: {args.devices:,} devices in {time.monotonic() - began:.1f} s", flush=True)
    began = time.monotonic()
    rows = prefill(url, args.devices, args.interval, start, now, args.prefill_processes)
    fill_s = time.monotonic() - began
    print(f"history: {rows:,} rows in {fill_s:.0f} s ({rows / fill_s:,.0f} rows/s)", flush=True)
    windows = rebuild_windows(engine, cfg, start, now)
    print(f"windows: {windows}", flush=True)
    analyze(engine)
    return engine, {"model": model, "history_rows": rows, "history_s": fill_s,
                    "windows": windows}


def measure_live(engine, cfg: CloudConfig, serves: Serves, broker: Mosquitto, model: str,
                 args) -> dict:
    """The fleet live; after its warm-up the rollout, drift and page timings (and, with
    --failover, the kill halfway through the steady phase); counts once it stopped."""
    drops = Subscriber(broker.port, topic="$SYS/broker/publish/messages/dropped",
                       client_id="scale-sys").start()
    live = LiveFleet(engine, SimSettings(
        broker=broker.url, fleet=FLEET, devices=args.devices, interval_s=args.interval,
        duration_s=args.duration, processes=args.sim_processes, device_prefix=PREFIX,
        sample_chance=0.0, seed=1)).start()
    first = live.first_row(timeout=120 + args.devices / 500)
    warmup = args.warmup if args.warmup is not None else \
        min(max(30.0, args.interval), args.duration / 3)
    kill = Failover(serves, engine, first + (warmup + args.duration) / 2).start() \
        if args.failover else None
    time.sleep(max(0.0, first + warmup - time.time()))
    print(f"live: warm-up of {warmup:.0f} s over, timing the jobs", flush=True)
    out = {"warmup_s": warmup,  # the rollout first: it needs the devices online
           "rollout": time_rollout(engine, cfg, model, broker.port, args.rollout_steps)}
    left = first + args.duration - PAGES_RESERVE_S - time.time()
    out["drift"] = time_drift(engine, cfg, args.drift_runs, left)
    analyze(engine)  # drift_scores was empty at the last ANALYZE (autovacuum's job)
    out["pages"] = time_pages(engine, cfg, args.page_runs)
    out["jobs_in_live"] = live.running()
    live.join()
    stopped = time.time()
    out["failover"] = kill.result() if kill else None
    published = live.report.published.get("telemetry", 0)
    rows, distinct = drain(engine, live.base_id, published)
    live.stop_polling()
    end = out["failover"]["killed_at"] if kill else \
        min(stopped, first + args.duration) - END_MARGIN_S
    if kill:
        out["failover"]["after"] = after_kill(live.poller, end)
    dropped = [int(p) for _t, p, _r in drops.received()]
    drops.stop()
    return out | {"report": live.report.to_dict(), "published": published, "stored": rows,
                  "distinct": distinct, "lost": published - distinct,
                  "doubled": rows - distinct, "dropped": max(dropped or [0]),
                  "latency": latency(live.poller, first + warmup, end)}


def storage(engine, interval: float) -> dict:
    """Bytes of the ``messages`` partition tree (and of every table) per device-day."""
    total = _pg_bytes(engine)  # VACUUM ANALYZE, then the partition tree's sizes
    with engine.connect() as conn:
        telemetry = conn.execute(sa.select(sa.func.count()).select_from(messages).where(
            messages.c.kind == protocol.TELEMETRY)).scalar()
        everything = conn.exec_driver_sql(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relkind = 'r' "
            "AND c.relnamespace = to_regnamespace(current_schema())::oid").scalar()
    device_days = telemetry * interval / 86400.0
    return {"messages_bytes": total, "all_bytes": int(everything), "telemetry_rows": telemetry,
            "device_days": device_days, "per_device_day": total / device_days,
            "all_per_device_day": int(everything) / device_days}


def run(admin: str, args) -> dict:
    """Everything in a fresh schema (dropped afterwards) and a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-scale-") as tmp, \
            contextlib.contextmanager(_pg_schema_url)(admin) as url:
        folder = Path(tmp)
        conf = "max_connections -1\nsys_interval 1\n"
        with Mosquitto(folder / "broker", max_inflight=1000, extra_conf=conf) as broker:
            cfg = CloudConfig.from_dict({
                "data_dir": str(folder / "data"), "db": url, "broker": broker.url,
                "ingest": {"telemetry_interval_s": args.interval}})
            engine, filled = build_store(url, cfg, args)
            serves = Serves(folder, url, broker.url, args.interval)
            try:
                start_serves(serves, engine, broker)
                cfg = cfg.model_copy(update={"http": serves.http["A"]})  # URLs of updates
                live = measure_live(engine, cfg, serves, broker, filled["model"], args)
            except BaseException:
                print(serves.log_tail(), flush=True)
                raise
            finally:
                serves.stop_all()
            result = filled | live | {"storage": storage(engine, args.interval)}
            engine.dispose()
    return result


# -- the report ---------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _spread(seconds: list[float], unit: float = 1.0, fmt: str = "{:.2f} s") -> str:
    return (f"{fmt.format(statistics.median(seconds) * unit)} median, "
            f"{fmt.format(max(seconds) * unit)} max of {len(seconds)}")


def targets_table(r: dict) -> list[str]:
    """One row per target: what was measured, the goal, met or missed."""
    steps = [t["seconds"] for t in r["rollout"]["timeline"]]
    worst_page = max(r["pages"].values())
    p95 = r["latency"]["steady_p95"]
    s = r["storage"]
    rows = [
        ("lost / doubled telemetry", f"{r['lost']:,} / {r['doubled']:,} of "
         f"{r['published']:,} published", "0 / 0", _verdict(r["lost"] == r["doubled"] == 0)),
        ("store latency, steady p95", f"{p95:.2f} s (p99 {r['latency']['steady_p99']:.2f} s; "
         f"whole run p95 {r['latency'].get('p95', float('nan')):.2f} s)",
         f"<= {TARGETS['store_p95_s']:g} s", _verdict(p95 <= TARGETS["store_p95_s"])),
        ("drift step", _spread(r["drift"]["seconds"]), f"<= {TARGETS['drift_s']:g} s",
         _verdict(max(r["drift"]["seconds"]) <= TARGETS["drift_s"])),
        ("rollout step", _spread(steps), f"<= {TARGETS['rollout_s']:g} s",
         _verdict(max(steps) <= TARGETS["rollout_s"])),
        ("dashboard, slowest page (median)", f"{worst_page:.0f} ms",
         f"<= {TARGETS['page_ms']:g} ms", _verdict(worst_page <= TARGETS["page_ms"])),
        ("database per device-day", f"{s['per_device_day'] / 1e6:.1f} MB (`messages`); "
         f"{s['all_per_device_day'] / 1e6:.1f} MB (all tables)", "stated", "-")]
    if r["failover"]:
        f = r["failover"]
        rows.append(("failover: the other serve leads", f"{f['takeover_s']:.1f} s (store "
                     f"latency after the kill: p99 {f['after']['p99']:.1f} s, max "
                     f"{f['after']['max']:.1f} s)", f"< {TAKEOVER_S} s",
                     _verdict(f["takeover_s"] < TAKEOVER_S)))
    return ["| target | measured | goal | |", "|---|---|---|---|"] + [
        f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]


def details(r: dict) -> list[str]:
    """The figures behind the targets."""
    rep, s = r["report"], r["storage"]
    lines = [f"- Fleet: {rep['connected']:,} of {rep['devices']:,} devices connected, "
             f"{r['published']:,} telemetry published, {r['stored']:,} stored, broker drops "
             f"{r['dropped']}; latency p50 {r['latency'].get('p50', float('nan')):.2f} s, "
             f"p99 {r['latency'].get('p99', float('nan')):.2f} s over the run; steady state "
             f"after a {r['warmup_s']:.0f} s warm-up"
             + (" until the kill" if r["failover"] else "")
             + f" ({r['latency']['steady_rows']:,} rows).",
             f"- History: {r['history_rows']:,} rows back-filled in {r['history_s']:.0f} s; "
             f"{r['windows']}.",
             "- Drift, the last step's report: " + ", ".join(
                 f"{k} {v}" for k, v in r["drift"]["report"].items() if v or k == "fired")
             + ".",
             "- Rollout steps (the state before each step): "
             + _steps_text(r["rollout"]["timeline"])
             + f"; {r['rollout']['canary']} canary devices answered; ended "
             f"`{r['rollout']['end']}`.",
             "- Pages (median ms): " + ", ".join(f"{k} {v:.0f}" for k, v in r["pages"].items())
             + ".",
             f"- Storage: {s['telemetry_rows']:,} telemetry rows = {s['device_days']:,.1f} "
             f"device-days; `messages` {s['messages_bytes'] / 1e9:.2f} GB, all tables "
             f"{s['all_bytes'] / 1e9:.2f} GB."]
    if not r["jobs_in_live"]:
        lines.append("- The timed jobs outlasted the fleet: later ones ran on a quiet store "
                     "(give a longer --duration).")
    return lines


def _span(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds % 3600 == 0 else f"{seconds / 60:g} min"


def section(r: dict, args) -> str:
    """The RESULTS.md section."""
    head = [f"## Cloud at scale (benchmarks/cloud_scale.py, {args.devices:,} devices)", "",
            f"{args.devices:,} simulated devices (`fleet sim`, {args.sim_processes} processes) "
            f"at one telemetry per {args.interval:g} s for {args.duration:g} s, on "
            f"{_span(args.history_s)} of back-filled history per device, into PostgreSQL "
            "through 2 `cloud serve` processes (1 ingest worker each); drift, rollout and "
            "dashboard timed in process while the fleet publishes"
            + (", the leading serve SIGKILLed halfway through the steady phase"
               if args.failover else "") + ".", ""]
    return "\n".join(head + targets_table(r) + [""] + details(r)) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50_000)
    parser.add_argument("--interval", type=float, default=30.0, help="telemetry period, s")
    parser.add_argument("--history-s", type=float, default=3600.0)
    parser.add_argument("--duration", type=float, default=300.0, help="live phase, s")
    parser.add_argument("--warmup", type=float, default=None,
                        help="s after the first live row (default: min(max(30, interval), "
                             "duration / 3))")
    parser.add_argument("--failover", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS")
    parser.add_argument("--sim-processes", type=int, default=4)
    parser.add_argument("--prefill-processes", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--drift-runs", type=int, default=3)
    parser.add_argument("--rollout-steps", type=int, default=8)
    parser.add_argument("--page-runs", type=int, default=5)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    admin = _pg_admin_url()
    if admin is None:
        raise SystemExit("PostgreSQL is not reachable at 127.0.0.1:5432 (database test)")
    raise_fd_limit(args.devices)
    began = time.monotonic()
    result = run(admin, args)
    body = section(result, args)
    print(body + f"\n({machine()}; the run took {time.monotonic() - began:.0f} s)", flush=True)
    if not args.no_write:
        write_section("cloud-scale", body)


if __name__ == "__main__":
    main()
