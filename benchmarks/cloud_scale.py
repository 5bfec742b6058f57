"""The cloud at fleet scale: a live simulated fleet over an hour of history, 2 serves.

N simulated devices (default 50,000) send one telemetry per 30 s into PostgreSQL through
2 ``cloud serve`` processes, on top of an hour of stored history per device.

Method, in order (a fresh PostgreSQL schema, dropped at the end):

1. Registry: N device rows (one fleet, ``sim-model`` 1, profile x86-64) inserted in bulk,
   and two published versions of ``sim-model`` whose manifests carry the simulator's
   reference statistics (1: what devices run, the drift reference; 2: the rollout's).
2. History: ``--history-s`` of telemetry for every device at a random phase (rows carry
   incarnation ``history``: the live devices' seqs start at 0 again, as after a re-image).
   The rows come from a pool of 500 real messages: the simulator's ``SimDevice.telemetry``
   of a few devices, each judged once by ingest's ``classify`` and made a row by
   ``store.rows.message_row``; row (device i, seq s) is template (i + s) mod 500 with its
   device_id, seq, ts, received_at and incarnation set (in the payload's JSON too, built
   from the template's text cut at those fields), COPYed straight into ``messages`` (a
   fresh store: no key can clash) in blocks of about 20,000 rows by several processes.
   The same processes fill the drift windows ingest keeps (``store.windows``) directly:
   each device window (those starting in the history, as ``windows.rebuild`` writes them)
   is its templates' ``window_codec.doc_of`` summed by ``add_docs``, each fleet window the
   sum of its device windows (part ``history``), and ``window_coverage`` says since the
   history's start less ``FUTURE_MARGIN_S`` (the windows count as complete). Up to
   ``--rebuild-check-max`` devices every direct window is compared with what
   ``windows.rebuild`` computes over the same span; above, three devices' rows are read
   back, judged again and their windows summed from their payloads as rebuild sums them.
   ``ANALYZE`` follows, as autovacuum would within a minute.
3. Live: ceil(N / ``--devices-per-broker``) edge mosquittos (anonymous; fd limit raised),
   each bridged to one central mosquitto (``edgekit/#`` out, ``edgekit/+/+/cmd`` in, QoS 1,
   MQTT v5, persistent session, queues uncapped), the devices split over the edge brokers
   in runs of ids; two ``cloud serve`` subprocesses on the central broker (1 ingest worker
   each, own client-id prefix and HTTP port; their drift and rollout jobs off, as this
   script times those jobs itself), and the simulator (``fleet sim``'s shards, one set per
   edge broker, in one process pool) with N devices for ``--duration`` s. A poller reads
   new rows every 0.1 s: latency = poll time - device ts (resolution 0.1 s); steady state
   starts a warm-up after the first live row (the connect wave's retained statuses) and
   ends 5 s before the fleet stops (or at the failover kill).
4. While the fleet publishes, after the warm-up, one after another: a rollout of version
   2 over the fleet with a 1 % canary, its controller job (``rollout_job``, commands
   published) stepped every 2 s, the canary's answers (probation, committed) published
   on each device's edge broker as it would once its commands are out, so the steps cover
   pending, canary (send, wait, collect) and baking (health over the fleet's telemetry);
   the drift controller's job (``drift_job(cfg)(engine, now)``) up to ``--drift-runs``
   times within the live phase left; then ``ANALYZE`` (``drift_scores`` was empty at the
   last one; autovacuum would have run it) and the dashboard's pages
   (``benchmarks/dashboard.py``'s, through the FastAPI app in process, median of
   ``--page-runs``). With ``--failover``, halfway through the steady phase, on a thread:
   the leading serve is SIGKILLed, the time until the other leads is taken, and the killed
   one is started again with its client ids (as its supervisor would), so the central
   broker hands its worker's queued share to it.
5. After the fleet stops and the store drains: lost = telemetry published - distinct
   (device, seq) stored, doubled = rows stored - distinct; bytes per device-day =
   ``pg_total_relation_size`` over the ``messages`` partition tree after VACUUM, over the
   device-days of telemetry stored (rows x interval / 86,400).

    python benchmarks/cloud_scale.py [--devices 50000] [--interval 30] [--history-s 3600]
        [--duration 300] [--devices-per-broker 15000] [--failover] [--no-write]
    smoke: --devices 2000 --history-s 600 --duration 60 --no-write
    (2 edge brokers: add --devices-per-broker 1000)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
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
from dataclasses import dataclass
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
from cloud_sync.drift.window_codec import add_docs, doc_of  # noqa: E402
from cloud_sync.ingest.classify import Accepted, Received, classify  # noqa: E402
from cloud_sync.sim import Credential, SimReport, SimSettings  # noqa: E402
from cloud_sync.sim.device import SimDevice  # noqa: E402
from cloud_sync.sim.shard import _model  # noqa: E402
from cloud_sync.store import create_engine, open_store, transaction, windows  # noqa: E402
from cloud_sync.store.partitions import DAY, create_day, day_of, partitioned  # noqa: E402
from cloud_sync.store.rows import JsonDoc, message_row  # noqa: E402
from cloud_sync.store.schema import (  # noqa: E402
    devices,
    fleet_windows,
    messages,
    rollout_devices,
    rollouts,
    telemetry_windows,
    window_coverage,
)
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
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by the mosquittos and the
    simulator's processes: one socket per device in each); warns when that is still too
    few for ``devices``, the most one edge broker holds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else max(soft, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want != resource.RLIM_INFINITY and want < devices + 2048:
        print(f"warning: open-file limit {want} < {devices + 2048}: an edge broker cannot "
              f"hold {devices:,} connections; lower --devices-per-broker", flush=True)
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


# The history is made from a pool of real telemetry: TEMPLATES messages of the simulator
# (``SimDevice.telemetry``), each judged once by ingest's ``classify`` and made a row by
# ``message_row``. Row (device i, seq s) takes template (i + s) % TEMPLATES with its
# device_id, seq, ts, received_at and incarnation set (in the payload too), and is written
# as a line of COPY text straight into ``messages`` (a fresh store: no key can clash).
TEMPLATES = 500  # per model version (the history has one: sim-model 1)
TEMPLATE_DEVICES = 5
STATIC_COLUMNS = ("model_name", "model_version", "window_s", "inferences", "errors",
                  "latency_p50", "latency_p95", "latency_p99", "confidence_mean", "frames",
                  "empty_frames", "detections", "score_mean")
COPY_COLUMNS = ("device_id", "fleet", "incarnation", "kind", "seq", "ts", "received_at",
                *STATIC_COLUMNS, "payload")
HISTORY_PART = "history"  # the fleet windows' part the prefill writes
_MARKS = {"device_id": "@DEVICE@", "seq": 987654321987, "ts": 987654321.125}


def _copy_value(value) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n") \
        .replace("\r", "\\r")


@dataclass(frozen=True)
class Template:
    """One judged telemetry message: its ``messages`` row, the COPY text of the columns
    no row changes, its payload's text around device_id, seq and ts, and its window
    counts (``window_codec.doc_of``)."""

    row: dict
    columns: str
    parts: tuple[str, str, str, str]
    doc: dict

    def payload(self, device: str, seq: int, ts: float) -> str:
        """The payload's JSON text of (device, seq, ts) (COPY-escaped: the parts are)."""
        p0, p1, p2, p3 = self.parts
        return f"{p0}{device}{p1}{seq}{p2}{ts!r}{p3}"


def _payload_parts(doc: dict) -> tuple[str, str, str, str]:
    """The compact JSON of ``doc`` cut at its device_id, seq and ts (in the protocol's
    order), checked against ``json.dumps`` of a copy with those fields replaced."""
    marked = json.dumps({**doc, **_MARKS}, separators=(",", ":"))
    tokens = [f'"device_id":"{_MARKS["device_id"]}"', f'"seq":{_MARKS["seq"]}',
              f'"ts":{_MARKS["ts"]!r}']
    at = [marked.index(t) for t in tokens]
    if at != sorted(at) or any(marked.count(t) != 1 for t in tokens):
        raise RuntimeError("telemetry JSON does not hold device_id, seq, ts once, in order")
    head, rest = marked.split(tokens[0])
    mid1, rest = rest.split(tokens[1])
    mid2, tail = rest.split(tokens[2])
    parts = (head + '"device_id":"', '"' + mid1 + '"seq":', mid2 + '"ts":', tail)
    probe = {"device_id": device_id(12345), "seq": 17, "ts": 1_700_000_000.123456}
    if "".join((parts[0], probe["device_id"], parts[1], str(probe["seq"]), parts[2],
                repr(probe["ts"]), parts[3])) != json.dumps({**doc, **probe},
                                                            separators=(",", ":")):
        raise RuntimeError("the payload template differs from json.dumps")
    return tuple(_copy_value(p) for p in parts)


def make_templates(interval: float, count: int = TEMPLATES) -> list[Template]:
    """``count`` telemetry messages of a few simulated devices, judged by ingest."""
    model = _model(SimSettings(broker="mqtt://127.0.0.1:1"))
    sims = [SimDevice(f"template-{k}", FLEET, model, np.random.default_rng(7_000 + k))
            for k in range(TEMPLATE_DEVICES)]
    templates = []
    for n in range(count):
        sim = sims[n % len(sims)]
        doc = json.loads(sim.telemetry(interval, INFERENCES))
        doc.update(incarnation=HISTORY)
        text = json.dumps(doc, separators=(",", ":"))
        received_at = doc["ts"] + 0.1
        judged = classify(Received(sim.topic(protocol.TELEMETRY), text.encode(), received_at))
        if not isinstance(judged, Accepted):
            raise RuntimeError(f"ingest refuses the simulator's telemetry: {judged.detail}")
        row = message_row(judged.fleet, judged.kind, judged.message, received_at,
                          JsonDoc(judged.doc, text))
        del row["payload"]  # the rows' payloads come from the parts
        templates.append(Template(row, "\t".join(_copy_value(row[c]) for c in STATIC_COLUMNS),
                                  _payload_parts(judged.doc), doc_of(judged.message)))
    if len({(t.row["model_name"], t.row["model_version"]) for t in templates}) != 1:
        raise RuntimeError("templates of more than one model version")
    return templates


def history_times(i: int, interval: float, start: float, end: float
                  ) -> tuple[list[float], list[float]]:
    """Device ``i``'s telemetry times from ``start`` to ``end`` at a random phase, and
    when ingest received each (0.05-0.3 s later)."""
    rng = np.random.default_rng(1_000_003 + i)
    ts = np.arange(start + rng.uniform(0, interval), end, interval)
    ts = ts[ts < end]  # arange's last step may round up to end
    return ts.tolist(), (ts + rng.uniform(0.05, 0.3, ts.size)).tolist()


_ENGINE = None  # one per prefill process
_TEMPLATES: list[Template] = []
_SUMS: dict[tuple[int, int], dict] = {}  # (first template, messages) -> their summed doc


def _init_prefill(templates: list[Template]) -> None:
    global _TEMPLATES
    _TEMPLATES = templates


def _window_doc(first: int, n: int) -> dict:
    """The window counts of templates first, first + 1, ... (n of them, mod the pool),
    summed in that order with ``add_docs`` (memoised: a window's templates are a run)."""
    key = (first, n)
    if key not in _SUMS:
        pool = len(_TEMPLATES)
        total = _TEMPLATES[first].doc
        for k in range(1, n):
            total = add_docs(total, _TEMPLATES[(first + k) % pool].doc)
        _SUMS[key] = total
    return _SUMS[key]


def _prefill_block(url: str, first: int, count: int, interval: float, start: float,
                   end: float, size: float, now: float) -> tuple[int, int, dict[float, dict]]:
    """Devices ``first``..``first + count - 1``: their history COPYed into ``messages`` and
    their device windows (those starting at or after ``start``, as ``windows.rebuild``
    writes) upserted, in one transaction; returns (rows, window rows, this block's sum of
    each fleet window)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = create_engine(url)
    pool = len(_TEMPLATES)
    model = (_TEMPLATES[0].row["model_name"], _TEMPLATES[0].row["model_version"])
    lines, window_rows, fleet_sums = [], [], {}

    def close(dev: str, i: int, begin: float, seq0: int, n: int) -> None:
        if begin < start:
            return  # begun before the history: rebuild leaves it alone
        doc = _window_doc((i + seq0) % pool, n)
        window_rows.append(windows._row(windows.WINDOW_KEY, (dev, *model, size, begin), doc,
                                        now, fleet=FLEET))
        fleet_sums[begin] = add_docs(fleet_sums[begin], doc) if begin in fleet_sums else doc

    for i in range(first, first + count):
        dev = device_id(i)
        prefix = f"{dev}\t{FLEET}\t{HISTORY}\t{protocol.TELEMETRY}\t"
        times, received = history_times(i, interval, start, end)
        begin, seq0 = None, 0
        for seq, (ts, at) in enumerate(zip(times, received, strict=True)):
            t = _TEMPLATES[(i + seq) % pool]
            lines.append(f"{prefix}{seq}\t{ts!r}\t{at!r}\t{t.columns}\t"
                         f"{t.payload(dev, seq, ts)}\n")
            w = windows.window_start(ts, size)
            if w != begin:
                if begin is not None:
                    close(dev, i, begin, seq0, seq - seq0)
                begin, seq0 = w, seq
        if begin is not None:
            close(dev, i, begin, seq0, len(times) - seq0)
    with transaction(_ENGINE) as conn:
        cur = conn.connection.dbapi_connection.cursor()
        try:
            with cur.copy(f"COPY messages ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
                for at in range(0, len(lines), 2000):
                    copy.write("".join(lines[at:at + 2000]))
        finally:
            cur.close()
        for at in range(0, len(window_rows), 1000):
            windows._upsert(conn, telemetry_windows, windows.WINDOW_KEY,
                            window_rows[at:at + 1000])
    return len(lines), len(window_rows), fleet_sums


def prefill(url: str, count: int, interval: float, start: float, end: float, size: float,
            now: float, processes: int) -> dict:
    """Every device's history and device windows in ``processes`` processes, then the
    fleet windows (part ``history``) and the fleets' window coverage; what was written."""
    began = time.monotonic()
    templates = make_templates(interval)
    per_device = max(1, round((end - start) / interval))
    block = max(1, CHUNK_ROWS // per_device)
    blocks = [(url, first, min(block, count - first), interval, start, end, size, now)
              for first in range(0, count, block)]
    rows = device_windows = 0
    fleet_sums: dict[float, dict] = {}
    print(f"  history: {len(templates)} templates in {time.monotonic() - began:.1f} s",
          flush=True)
    with multiprocessing.get_context("spawn").Pool(
            processes, initializer=_init_prefill, initargs=(templates,)) as pool:
        for i, (n, w, sums) in enumerate(pool.imap(_prefill_block_args, blocks), 1):
            rows, device_windows = rows + n, device_windows + w
            for begin, doc in sums.items():  # in device order, as rebuild sums them
                fleet_sums[begin] = add_docs(fleet_sums[begin], doc) \
                    if begin in fleet_sums else doc
            if i % max(1, len(blocks) // 10) == 0:
                took = time.monotonic() - began
                print(f"  history: {i}/{len(blocks)} blocks, {rows:,} rows, {took:.0f} s "
                      f"({rows / took:,.0f} rows/s)", flush=True)
    fill_s = time.monotonic() - began
    model = (templates[0].row["model_name"], templates[0].row["model_version"])
    engine = create_engine(url)
    try:
        with transaction(engine) as conn:
            windows._upsert(conn, fleet_windows, windows.FLEET_KEY, [
                windows._row(windows.FLEET_KEY, (FLEET, HISTORY_PART, *model, size, begin),
                             doc, now) for begin, doc in sorted(fleet_sums.items())])
            conn.execute(sa.insert(window_coverage), [
                {"fleet": FLEET, "window_s": size, "since": start - windows.FUTURE_MARGIN_S}])
    finally:
        engine.dispose()
    return {"rows": rows, "seconds": fill_s, "device_windows": device_windows,
            "fleet_windows": len(fleet_sums), "templates": len(templates)}


def _prefill_block_args(args: tuple) -> tuple[int, int, dict[float, dict]]:
    return _prefill_block(*args)


# -- the direct windows against windows.rebuild ------------------------------------------


def _same(a, b) -> bool:
    """Equal documents, floats to 1e-9 (a sum's order may differ from rebuild's)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) \
            and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _stored_windows(engine, devices: list[str] | None = None
                    ) -> tuple[dict[tuple, tuple], dict[tuple, list], dict]:
    """(device windows by key, fleet windows by key without the part, coverage)."""
    t, f = telemetry_windows.c, fleet_windows.c
    query = sa.select(t.fleet, t.messages, t.inferences, t.counts,
                      *(t[c] for c in windows.WINDOW_KEY))
    if devices is not None:
        query = query.where(t.device_id.in_(devices))
    with engine.connect() as conn:
        device = {tuple(r[4:]): tuple(r[:4]) for r in conn.execute(query)}
        fleet: dict[tuple, list] = {}
        for r in conn.execute(sa.select(f.part, f.messages, f.inferences, f.counts,
                                        *(f[c] for c in windows.FLEET_KEY if c != "part"))):
            fleet.setdefault(tuple(r[4:]), []).append(tuple(r[1:4]))
        coverage = windows.covered(conn)
    return device, fleet, coverage


def _compare(direct: dict, other: dict, what: str) -> list[str]:
    """What differs between two {key: value} maps (at most 3 examples)."""
    bad = [f"{what} {k}: only {'direct' if k in direct else 'rebuild'}"
           for k in sorted(direct.keys() ^ other.keys(), key=str)]
    bad += [f"{what} {k} differs" for k in sorted(direct.keys() & other.keys(), key=str)
            if not _same(direct[k], other[k])]
    return bad


def check_against_rebuild(engine, size: float, start: float, end: float, now: float) -> str:
    """Every direct window against ``windows.rebuild`` over the same span (which then
    replaces them with its own, equal, rows); in words."""
    device, fleet, coverage = _stored_windows(engine)
    began = time.monotonic()
    windows.rebuild(engine, lambda fleet: size, start, end, now=now)
    took = time.monotonic() - began
    device2, fleet2, coverage2 = _stored_windows(engine)
    single = {k: v[0] for k, v in fleet.items() if len(v) == 1}
    single2 = {k: v[0] for k, v in fleet2.items() if len(v) == 1}
    bad = _compare(device, device2, "device window") + _compare(single, single2, "fleet window")
    bad += [f"fleet window {k}: {len(v)} parts" for k, v in {**fleet, **fleet2}.items()
            if len(v) != 1]
    bad += [] if coverage == coverage2 else [f"coverage {coverage} != {coverage2}"]
    inexact = sum(device[k] != device2[k] for k in device.keys() & device2.keys()) + sum(
        single[k] != single2[k] for k in single.keys() & single2.keys())
    verdict = "equal" if not bad else f"**{len(bad)} differ** ({'; '.join(bad[:3])})"
    return (f"{verdict} to windows.rebuild's ({len(device2):,} device and {len(fleet2)} fleet "
            f"windows and coverage compared, {inexact} of them with a float sum off in its "
            f"last digits: another order of summation; rebuild took {took:.1f} s)")


def check_sample(engine, count: int, size: float, start: float) -> str:
    """A few devices' stored telemetry read back: each row equals what ``classify`` and
    ``message_row`` make of its payload, and the device's windows equal what rebuild's
    own summation (``windows._parts``, ``_summed``) makes of those payloads; in words."""
    sample = sorted({device_id(0), device_id(count // 2), device_id(count - 1)})
    stored, _fleet, _coverage = _stored_windows(engine, sample)
    c = messages.c
    columns = [c[n] for n in COPY_COLUMNS if n != "payload"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*columns, c.payload).where(
            c.device_id.in_(sample), c.kind == protocol.TELEMETRY).order_by(
            c.device_id, c.seq)).all()
    bad, sums = [], {}
    for row in rows:
        text = json.dumps(row.payload, separators=(",", ":"))
        judged = classify(Received(protocol.topic(FLEET, row.device_id, protocol.TELEMETRY),
                                   text.encode(), row.received_at))
        if not isinstance(judged, Accepted):
            bad.append(f"{row.device_id}#{row.seq} refused: {judged.detail}")
            continue
        want = message_row(judged.fleet, judged.kind, judged.message, row.received_at)
        if any(not _same(want[n], row._mapping[n]) for n in COPY_COLUMNS if n != "payload"):
            bad.append(f"{row.device_id}#{row.seq}: columns differ from message_row's")
        for key, part in windows._parts(lambda fleet: size,
                                        [(FLEET, judged.message)]).items():
            if key[4] >= start:
                fleet, total = sums.get(key, (part.fleet, None))
                sums[key] = (fleet, windows._summed(key[0], key[1:3], key[3], key[4],
                                                    part.docs, total))
    computed = {k: (fleet, doc.get("messages", 0), doc.get("inferences", 0), doc)
                for k, (fleet, doc) in sums.items()}
    bad += _compare(stored, computed, "device window")
    verdict = "equal" if not bad else f"**{len(bad)} differ** ({'; '.join(bad[:3])})"
    return (f"sample of {len(sample)} devices ({len(rows)} rows re-judged, {len(stored)} "
            f"device windows re-summed from their payloads): {verdict}")


def analyze(engine) -> None:
    """Planner statistics, as autovacuum gathers them within a minute of a bulk load."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")


# -- the brokers: edge brokers bridged to one central broker --------------------------------


BROKER_CONF = "max_connections -1\nsys_interval 1\n"
BRIDGE_WAIT_S = 30.0


def bridge_conf(k: int, central_port: int) -> str:
    """Edge broker ``k``'s bridge to the central one: device traffic out, commands in (QoS
    1 both ways), a persistent MQTT v5 session. Its queue is not capped: mosquitto 2.0 has
    no per-bridge limit, and ``tests.brokers.Mosquitto`` sets ``max_queued_messages 0``
    (no maximum; the default, 1,000 per client, would drop QoS 1 traffic)."""
    return "\n".join([
        f"connection edge-{k}", f"address 127.0.0.1:{central_port}",
        f"remote_clientid scale-bridge-{k}", f"local_clientid scale-bridge-{k}-local",
        "bridge_protocol_version mqttv50", "cleansession false", "restart_timeout 1 5",
        f"topic {protocol.TOPIC_ROOT}/# out 1",
        f"topic {protocol.subscription(protocol.CMD)} in 1"]) + "\n"


def shard_devices(devices: int, per_broker: int) -> list[range]:
    """Device indices of each edge broker: ceil(devices / per_broker) equal runs."""
    count = max(1, math.ceil(devices / per_broker))
    size = math.ceil(devices / count)
    return [range(first, min(devices, first + size)) for first in range(0, devices, size)]


class Brokers:
    """K edge mosquittos (the devices' brokers), each bridged to one central mosquitto
    (the serves' broker)."""

    def __init__(self, folder: Path, shards: list[range]) -> None:
        self.shards = shards
        self.central = Mosquitto(folder / "central", max_inflight=1000, extra_conf=BROKER_CONF)
        self.edges = [Mosquitto(folder / f"edge-{k}", max_inflight=1000,
                                extra_conf=BROKER_CONF) for k in range(len(shards))]
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Brokers:
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.central)
            for k, edge in enumerate(self.edges):
                edge.extra_conf = BROKER_CONF + bridge_conf(k, self.central.port)
                stack.enter_context(edge)
            self.wait_bridged()
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()  # edges first, then the central one

    @property
    def all(self) -> list[Mosquitto]:
        return [self.central, *self.edges]

    def wait_bridged(self) -> None:
        """Every bridge connected: its ``$SYS/broker/connection/<id>/state`` notification
        (retained) says 1 on the central broker."""
        states = Subscriber(self.central.port, topic="$SYS/broker/connection/+/state",
                            client_id="scale-bridges").start()
        try:
            want = {f"$SYS/broker/connection/scale-bridge-{k}/state"
                    for k in range(len(self.edges))}
            wait_for(lambda: want <= {t for t, p, _r in states.received() if p == b"1"},
                     BRIDGE_WAIT_S, f"{len(want)} bridges to connect")
        except RuntimeError:
            print("\n".join(e.log[-2000:] for e in self.edges), flush=True)
            raise
        finally:
            states.stop()

    def edge_of(self, index: int) -> int:
        """Which edge broker device ``index`` connects to."""
        return next(k for k, shard in enumerate(self.shards) if index in shard)

    def layout(self) -> str:
        """The brokers, in words."""
        sizes = sorted({len(s) for s in self.shards})
        each = "-".join(f"{n:,}" for n in (sizes[0], sizes[-1])[:len(sizes)])
        return (f"{_edges(len(self.edges))} ({each} devices each) bridged to one central "
                "broker (the serves'; bridge MQTT v5, QoS 1 both ways, persistent session)")


class Commands:
    """Every command the bridges bring to the edge brokers (a subscriber on each)."""

    def __init__(self, brokers: Brokers) -> None:
        self.brokers = brokers
        self.subs = [Subscriber(b.port, topic=protocol.subscription(protocol.CMD),
                                client_id=f"scale-cmd-{k}").start()
                     for k, b in enumerate(brokers.edges)]

    def stop(self) -> int:
        """How many commands reached the edge broker of the device they are for."""
        reached = 0
        for k, sub in enumerate(self.subs):
            for topic, _payload, _retain in sub.received():
                device = protocol.parse_topic(topic)[1]
                reached += self.brokers.edge_of(int(device.removeprefix(PREFIX))) == k
            sub.stop()
        return reached


class Drops:
    """``$SYS/broker/publish/messages/dropped`` of every broker."""

    def __init__(self, brokers: Brokers) -> None:
        self.subs = [Subscriber(b.port, topic="$SYS/broker/publish/messages/dropped",
                                client_id=f"scale-sys-{k}").start()
                     for k, b in enumerate(brokers.all)]

    def stop(self) -> list[int]:
        """The last count of each broker (central first)."""
        counts = [max([int(p) for _t, p, _r in s.received()] or [0]) for s in self.subs]
        for sub in self.subs:
            sub.stop()
        return counts


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


def start_serves(serves: Serves, engine, brokers: Brokers) -> None:
    """Both serves up: a leader, and a worker subscribed (a probe device's telemetry, in a
    fleet of its own, published on edge broker 0, is stored: the bridge forwards too)."""
    for prefix in ("A", "B"):
        serves.start(prefix)
    wait_for(lambda: serves.leader(engine), 90, "a leader")
    probe = Publisher(brokers.edges[0].port, client_id="scale-probe")
    try:
        wait_subscribed(engine, probe, timeout=90)
    finally:
        probe.close()


# -- the live fleet ----------------------------------------------------------------------------


def fleet_settings(brokers: Brokers, args) -> list[SimSettings]:
    """One ``fleet sim`` per edge broker: its share of the devices (ids ``dev-NNNNN`` as
    registered, given as credentials without a login) and of the simulator processes."""
    count = len(brokers.edges)
    out = []
    for k, (edge, shard) in enumerate(zip(brokers.edges, brokers.shards, strict=True)):
        processes = max(1, args.sim_processes // count + (k < args.sim_processes % count))
        out.append(SimSettings(
            broker=edge.url, fleet=FLEET, devices=len(shard), interval_s=args.interval,
            duration_s=args.duration, processes=processes, device_prefix=PREFIX,
            sample_chance=0.0, seed=1 + k, credentials=tuple(
                Credential(device_id(i), FLEET, "", "") for i in shard)))
    return out


def run_fleets(settings: list[SimSettings]) -> SimReport:
    """``run_fleet`` of every settings at once: all their shards in one process pool."""
    from cloud_sync.sim.shard import run_shard

    tasks = [(s, i, min(s.processes, s.devices)) for s in settings
             for i in range(min(s.processes, s.devices))]
    start = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(len(tasks)) as pool:
        results = pool.starmap(run_shard, tasks, chunksize=1)
    report = SimReport()
    for result in results:
        report.add(result)
    report.elapsed_s = time.monotonic() - start
    return report


class LiveFleet:
    """The simulated fleet (``run_fleets``) on a thread, the latency poller on another."""

    def __init__(self, engine, settings: list[SimSettings]) -> None:
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
            self.report = run_fleets(self.settings)
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


def _answer_canary(engine, rid: int, brokers: Brokers) -> int:
    """The canary's answers to its update, published as each device would (probation,
    then committed) on its edge broker, through the bridge to ingest; returns how many
    devices answered."""
    with engine.connect() as conn:
        sent = conn.execute(sa.select(rollout_devices.c.device_id, rollout_devices.c.cmd_id)
                            .where(rollout_devices.c.rollout_id == rid,
                                   rollout_devices.c.state == "sent")).all()
    items: dict[int, list[tuple[str, bytes]]] = {}
    for device, cid in sent:
        edge = brokers.edge_of(int(device.removeprefix(PREFIX)))
        for seq, phase in enumerate(("probation", "committed")):
            result = protocol.CommandResult(device_id=device, seq=seq, ts=time.time(),
                                            cmd_id=cid, type="update", ok=True,
                                            detail={"phase": phase})
            items.setdefault(edge, []).append(
                (protocol.topic(FLEET, device, protocol.CMD_RESULT), result.to_json()))
    for edge, answers in sorted(items.items()):
        publisher = Publisher(brokers.edges[edge].port, client_id=f"scale-canary-{edge}")
        try:
            publisher.send(answers)
        finally:
            publisher.close()
    total = sum(len(v) for v in items.values())
    wait_for(lambda: _count_results(engine, [d for d, _ in sent]) >= total, 60,
             "the canary's answers to be stored")
    return len(sent)


def _count_results(engine, ids: list[str]) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(messages).where(
            messages.c.kind == protocol.CMD_RESULT, messages.c.device_id.in_(ids))).scalar()


def time_rollout(engine, cfg: CloudConfig, model: str, brokers: Brokers, steps: int) -> dict:
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
            answered = _answer_canary(engine, rid, brokers)
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
    """Registry, models, history and its windows; the engine and what was filled."""
    engine = open_store(url)
    now = time.time()
    start = now - args.history_s
    began = time.monotonic()
    register_devices(engine, args.devices, start, now)
    model = publish_models(engine)
    ensure_partitions(engine, start, now)
    print(f"registry: {args.devices:,} devices in {time.monotonic() - began:.1f} s", flush=True)
    size = cfg.triggers.policy_for(FLEET).window_s
    filled = prefill(url, args.devices, args.interval, start, now, size, now,
                     args.prefill_processes)
    rows, fill_s = filled["rows"], filled["seconds"]
    print(f"history: {rows:,} rows in {fill_s:.0f} s ({rows / fill_s:,.0f} rows/s, "
          f"{args.prefill_processes} processes)", flush=True)
    text = (f"windows filled directly: {filled['device_windows']:,} device and "
            f"{filled['fleet_windows']} fleet windows of {size:g} s, covered since the "
            "history's start")
    check = (check_against_rebuild(engine, size, start, now, now)
             if args.devices <= args.rebuild_check_max else
             check_sample(engine, args.devices, size, start))
    print(f"windows: {text}; {check}", flush=True)
    analyze(engine)
    return engine, {"model": model, "history_rows": rows, "history_s": fill_s,
                    "windows": f"{text}; {check}"}


def measure_live(engine, cfg: CloudConfig, serves: Serves, brokers: Brokers, model: str,
                 args) -> dict:
    """The fleet live; after its warm-up the rollout, drift and page timings (and, with
    --failover, the kill halfway through the steady phase); counts once it stopped."""
    drops, commands = Drops(brokers), Commands(brokers)
    live = LiveFleet(engine, fleet_settings(brokers, args)).start()
    first = live.first_row(timeout=120 + args.devices / 50)  # the connect wave first
    warmup = args.warmup if args.warmup is not None else \
        min(max(30.0, args.interval), args.duration / 3)
    kill = Failover(serves, engine, first + (warmup + args.duration) / 2).start() \
        if args.failover else None
    time.sleep(max(0.0, first + warmup - time.time()))
    print(f"live: warm-up of {warmup:.0f} s over, timing the jobs", flush=True)
    out = {"warmup_s": warmup,  # the rollout first: it needs the devices online
           "rollout": time_rollout(engine, cfg, model, brokers, args.rollout_steps)}
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
    dropped = drops.stop()
    out["rollout"]["reached"] = commands.stop()
    return out | {"report": live.report.to_dict(), "published": published, "stored": rows,
                  "distinct": distinct, "lost": published - distinct,
                  "doubled": rows - distinct, "dropped": sum(dropped),
                  "dropped_by_broker": dropped, "brokers": brokers.layout(),
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
        shards = shard_devices(args.devices, args.devices_per_broker)
        with Brokers(folder / "brokers", shards) as brokers:
            print(f"brokers: {brokers.layout()}", flush=True)
            central = brokers.central
            cfg = CloudConfig.from_dict({
                "data_dir": str(folder / "data"), "db": url, "broker": central.url,
                "ingest": {"telemetry_interval_s": args.interval}})
            engine, filled = build_store(url, cfg, args)
            serves = Serves(folder, url, central.url, args.interval)
            try:
                start_serves(serves, engine, brokers)
                cfg = cfg.model_copy(update={"http": serves.http["A"]})  # URLs of updates
                live = measure_live(engine, cfg, serves, brokers, filled["model"], args)
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
             f"{r['dropped']} ({', '.join(map(str, r['dropped_by_broker']))}: central, "
             f"edges); latency p50 {r['latency'].get('p50', float('nan')):.2f} s, "
             f"p99 {r['latency'].get('p99', float('nan')):.2f} s over the run; steady state "
             f"after a {r['warmup_s']:.0f} s warm-up"
             + (" until the kill" if r["failover"] else "")
             + f" ({r['latency']['steady_rows']:,} rows).",
             f"- Brokers: {r['brokers']}.",
             f"- History: {r['history_rows']:,} rows back-filled in {r['history_s']:.0f} s "
             f"({r['history_rows'] / r['history_s']:,.0f} rows/s); "
             f"{r['windows']}.",
             "- Drift, the last step's report: " + ", ".join(
                 f"{k} {v}" for k, v in r["drift"]["report"].items() if v or k == "fired")
             + ".",
             "- Rollout steps (the state before each step): "
             + _steps_text(r["rollout"]["timeline"])
             + f"; {r['rollout']['reached']} commands reached their device's edge broker "
             f"through the bridge; {r['rollout']['canary']} canary devices answered (on "
             "their edge brokers); ended "
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


def _edges(count: int) -> str:
    return f"{count} edge broker{'s' if count > 1 else ''}"


def _span(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds % 3600 == 0 else f"{seconds / 60:g} min"


def section(r: dict, args) -> str:
    """The RESULTS.md section."""
    head = [f"## Cloud at scale (benchmarks/cloud_scale.py, {args.devices:,} devices)", "",
            f"{args.devices:,} simulated devices (`fleet sim`, {args.sim_processes} processes) "
            f"on {_edges(len(r['dropped_by_broker']) - 1)} bridged to one central broker, "
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
    parser.add_argument("--sim-processes", type=int, default=4,
                        help="simulator processes in all (shared out over the edge brokers)")
    parser.add_argument("--devices-per-broker", type=int, default=15_000,
                        help="edge brokers = ceil(devices / this), each bridged to the central")
    parser.add_argument("--rebuild-check-max", type=int, default=2_000,
                        help="up to this many devices, every direct window is compared with "
                             "windows.rebuild's; above, a sample of devices is")
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
    raise_fd_limit(max(map(len, shard_devices(args.devices, args.devices_per_broker))))
    began = time.monotonic()
    result = run(admin, args)
    body = section(result, args)
    print(body + f"\n({machine()}; the run took {time.monotonic() - began:.0f} s)", flush=True)
    if not args.no_write:
        write_section("cloud-scale", body)


if __name__ == "__main__":
    main()
