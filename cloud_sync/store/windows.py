"""Per-device drift windows, summed by ingest as telemetry arrives (issue 21).

Each new telemetry message (never a redelivery: ``writes.insert_new_messages`` says which
rows were new) is added to its device's window of its fleet's trigger policy: the window
``[k w, (k + 1) w)`` that holds its ``ts``, ``w`` the policy's ``window_s``, keyed by
(device, model, version, w, window start), the aligned windows the drift step scores
(``triggers.scoring.last_windows``). A row holds the ``WindowCounts`` of its messages as
JSON (``drift.window_codec``), so the drift step reads one row per device window and
never a payload. Each row's ``version`` counts its updates: the drift step scores a
version once (``triggers.incremental``). The batch's messages are also added to the
writer's part of its fleet windows (``fleet_windows``: one part per ingest worker, so the
pooled fleet is a few rows and no two workers write one).

Writers: an ingest batch has already locked its devices' registry rows, in key order,
before it gets here (``ingest.batch``), so no two batches update one device's windows at
once; the read-add-write of a row is safe without locking it again. A fleet part is
locked (PostgreSQL) before it is read: only a worker that took over another's client id
may still be finishing a batch with it.

``window_coverage`` records, per (fleet, window size), since when ingest keeps those
windows. A window is complete when it starts at least ``FUTURE_MARGIN_S`` after that
(a device clock ahead of the cloud could have sent one of its messages earlier); the
drift step reads the others from ``messages`` (``triggers.windows``). A worker whose
policy for a fleet has another size drops that fleet's other coverage rows, so a size
that comes back after a gap counts only from its return.

``rebuild`` computes the rows of a time span from ``messages`` (after an import, or to
cover history from before an upgrade).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloud_sync.drift.window import DriftError, WindowCounts
from cloud_sync.drift.window_codec import add_docs, doc_of, from_doc
from cloud_sync.store.schema import (
    fleet_windows,
    messages,
    telemetry_windows,
    window_coverage,
)
from cloud_sync.store.writes import UPSERTS, upsert_rows
from edge_agent import protocol
from edge_agent.errors import EdgekitError

log = logging.getLogger(__name__)

WINDOW_KEY = ("device_id", "model_name", "model_version", "window_s", "window_start")
FUTURE_MARGIN_S = 300.0
ERROR = "error"  # a row whose messages could not be summed (other bins): the drift step says why
Sizes = Callable[[str], float]  # fleet -> its policy's window_s
Key = tuple[str, str, str, float, float]  # device, model, version, window_s, window_start


def window_start(ts: float, window_s: float) -> float:
    """The start of the aligned window of ``window_s`` that holds ``ts``."""
    return math.floor(ts / window_s) * window_s


@dataclass
class Part:
    """What one batch adds to one device window."""

    fleet: str
    docs: list[dict[str, Any]]  # each message's counts (``window_codec.doc_of``)


def _parts(sizes: Sizes, items: Iterable[tuple[str, protocol.Telemetry]]) -> dict[Key, Part]:
    parts: dict[Key, Part] = {}
    for fleet, message in items:
        if message.model is None:
            continue
        size = sizes(fleet)
        key = (message.device_id, message.model.name, message.model.version, size,
               window_start(message.ts, size))
        parts.setdefault(key, Part(fleet, [])).docs.append(doc_of(message))
    return parts


FLEET_KEY = ("fleet", "part", "model_name", "model_version", "window_s", "window_start")
FleetKey = tuple[str, str, str, str, float, float]


def _stored(conn: Connection, table: sa.Table, columns: Sequence[str], keys: Sequence[tuple],
            lock: bool = False) -> dict[tuple, dict[str, Any]]:
    """The counts documents of ``keys`` (values of ``columns``, the table's unique key:
    its first column, ..., ``window_s``, ``window_start``) already stored; ``lock``: locked
    for this transaction (PostgreSQL)."""
    c = table.c
    found: dict[tuple, dict[str, Any]] = {}
    if not keys:
        return found
    wanted = set(keys)
    starts = [k[-1] for k in keys]
    firsts = sorted({k[0] for k in keys})
    for i in range(0, len(firsts), 500):
        query = sa.select(*(c[n] for n in columns), c.counts).where(
            c[columns[0]].in_(firsts[i:i + 500]), c.window_start >= min(starts),
            c.window_start <= max(starts)).order_by(*(c[n] for n in columns))
        for row in conn.execute(query.with_for_update() if lock else query):
            key = tuple(row[:len(columns)])
            if key in wanted:
                found[key] = row.counts
    return found


def _summed(scope: str, model: tuple[str, str], size: float, start: float,
            docs: list[dict[str, Any]], doc: dict[str, Any] | None) -> dict[str, Any]:
    """A stored window's document plus more counts (``window_codec.add_docs``)."""
    if doc is not None and ERROR in doc:
        return doc
    total = doc
    try:
        for more in docs:
            if ERROR in more:
                return more
            total = more if total is None else add_docs(total, more)
        return total
    except DriftError as exc:  # e.g. two bin layouts in one window: kept, and reported
        log.warning("window %s of %s %s %s not summed: %s", start, scope, *model, exc)
        return {ERROR: str(exc)[:300], "inferences": 0, "messages": 0}


def _upsert(conn: Connection, table: sa.Table, columns: Sequence[str],
            rows: list[dict[str, Any]]) -> None:
    """Insert or overwrite rows on the table's key; a device window's ``version`` counts
    its updates (the drift step scores a version once)."""
    update = {name: f"excluded.{name}" for name in ("messages", "inferences", "counts",
                                                    "updated_at")}
    if "version" in table.c:
        update.update(fleet="excluded.fleet", version=f"{table.name}.version + 1")
    upsert_rows(conn, table, rows, columns, update)


def _row(columns: Sequence[str], key: tuple, doc: dict[str, Any], now: float,
         **more: Any) -> dict[str, Any]:
    return {**dict(zip(columns, key, strict=True)), **more, "messages": doc.get("messages", 0),
            "inferences": doc.get("inferences", 0), "counts": doc, "updated_at": now}


def _device_rows(conn: Connection, parts: dict[Key, Part], now: float) -> list[dict]:
    stored = _stored(conn, telemetry_windows, WINDOW_KEY, sorted(parts))
    return [_row(WINDOW_KEY, key, _summed(key[0], key[1:3], key[3], key[4], part.docs,
                                          stored.get(key)), now, fleet=part.fleet)
            for key, part in sorted(parts.items())]


def _fleet_parts(parts: dict[Key, Part], writer: str) -> dict[FleetKey, list[dict]]:
    fleets: dict[FleetKey, list[dict]] = {}
    for (_device, name, version, size, start), part in sorted(parts.items()):
        fleets.setdefault((part.fleet, writer, name, version, size, start), []) \
            .extend(part.docs)
    return fleets


def _fleet_rows(conn: Connection, fleets: dict[FleetKey, list[dict]],
                now: float) -> list[dict]:
    """This writer's part of each fleet window plus the batch (its rows locked first: a
    worker that took over this one's client id may still be finishing a batch)."""
    stored = _stored(conn, fleet_windows, FLEET_KEY, sorted(fleets), lock=True)
    return [_row(FLEET_KEY, key, _summed(f"fleet:{key[0]}", key[2:4], key[4], key[5], windows,
                                         stored.get(key)), now)
            for key, windows in sorted(fleets.items())]


def record_coverage(conn: Connection, pairs: set[tuple[str, float]], now: float) -> None:
    """Each (fleet, size) not yet kept is kept from ``now``; a fleet's other sizes are
    dropped (a size that returns after a gap counts from its return). One small read per
    batch, in the batch's transaction, so a rolled-back batch records nothing."""
    c = window_coverage.c
    fleets = sorted({f for f, _ in pairs})
    have = {(r.fleet, r.window_s) for r in conn.execute(
        sa.select(c.fleet, c.window_s).where(c.fleet.in_(fleets)))}
    for fleet, size in sorted(have - pairs):
        if any(f == fleet for f, _ in pairs):
            conn.execute(sa.delete(window_coverage).where(c.fleet == fleet, c.window_s == size))
    missing = sorted(pairs - have)
    if missing:
        stmt = UPSERTS[conn.dialect.name](window_coverage).on_conflict_do_nothing()
        conn.execute(stmt, [{"fleet": f, "window_s": w, "since": now} for f, w in missing])


def add(conn: Connection, sizes: Sizes, items: Sequence[tuple[str, protocol.Telemetry]],
        now: float, writer: str = "") -> int:
    """Add new telemetry ``(fleet, message)`` to its device windows and to ``writer``'s
    part of its fleet windows; the device rows written."""
    parts = _parts(sizes, items)
    if not parts:
        return 0
    record_coverage(conn, {(p.fleet, k[3]) for k, p in parts.items()}, now)
    rows = _device_rows(conn, parts, now)
    _upsert(conn, telemetry_windows, WINDOW_KEY, rows)
    _upsert(conn, fleet_windows, FLEET_KEY,
            _fleet_rows(conn, _fleet_parts(parts, writer), now))
    return len(rows)


def covered(conn: Connection) -> dict[tuple[str, float], float]:
    """(fleet, window size) -> since when ingest keeps those windows."""
    return {(r.fleet, r.window_s): r.since for r in conn.execute(sa.select(window_coverage))}


def is_complete(coverage: dict[tuple[str, float], float], fleet: str, size: float,
                start: float) -> bool:
    """Whether the stored windows of ``fleet`` and ``size`` hold all of ``[start, ...)``."""
    since = coverage.get((fleet, size))
    return since is not None and start >= since + FUTURE_MARGIN_S


def read(conn: Connection, start: float, end: float, skip: Iterable[str] = ()
         ) -> Iterable[Any]:
    """Rows with ``start <= window_start < end`` (every size; every fleet but ``skip``)."""
    c = telemetry_windows.c
    query = sa.select(c.fleet, c.device_id, c.model_name, c.model_version, c.window_s,
                      c.window_start, c.counts).where(c.window_start >= start,
                                                      c.window_start < end)
    if skip:
        query = query.where(c.fleet.not_in(sorted(skip)))
    return conn.execute(query)


def counts_of(row: Any) -> WindowCounts:
    """A stored row as ``WindowCounts`` (raises ``DriftError`` for one that failed)."""
    doc = row.counts
    if ERROR in doc:
        raise DriftError(f"window {row.window_start:g} of {row.device_id}: {doc[ERROR]}")
    return from_doc(doc, row.device_id, row.model_name, row.model_version, row.window_start,
                    row.window_start + row.window_s, frozenset([row.device_id]))


def _sum_span(conn: Connection, sizes: Sizes, start: float, end: float,
              fleets: Sequence[str] | None) -> dict[Key, tuple[str, dict[str, Any]]]:
    """Every telemetry message with ``start <= ts < end``, streamed and summed by window
    (a window that cannot be summed becomes an error document)."""
    c = messages.c
    query = sa.select(c.fleet, c.payload).where(
        c.kind == protocol.TELEMETRY, c.ts >= start, c.ts < end, c.fleet.is_not(None))
    if fleets is not None:
        query = query.where(c.fleet.in_(list(fleets)))
    sums: dict[Key, tuple[str, dict[str, Any]]] = {}
    for row in conn.execution_options(stream_results=True, yield_per=2000).execute(query):
        try:
            message = protocol.Telemetry.from_dict(row.payload)
        except EdgekitError:
            continue
        for key, part in _parts(sizes, [(row.fleet, message)]).items():
            fleet, total = sums.get(key, (part.fleet, None))
            sums[key] = (fleet, _summed(key[0], key[1:3], key[3], key[4], part.docs, total))
    return sums


REBUILT = "rebuild"  # the fleet part ``rebuild`` writes (it replaces the writers' parts)


def _write_chunk(conn: Connection, sums: dict[Key, tuple[str, dict[str, Any]]],
                 start: float, cursor: float, now: float) -> int:
    """One chunk of ``rebuild``: windows that start in this chunk replace what is stored
    (every writer's fleet part too); a window begun in an earlier chunk of the run is added
    to what that chunk wrote."""
    sums = {k: v for k, v in sums.items() if k[4] >= start}
    begun = [k for k in sums if k[4] < cursor]
    earlier = _stored(conn, telemetry_windows, WINDOW_KEY, begun)
    rows = []
    fleets: dict[FleetKey, list[dict]] = {}
    for key, (fleet, total) in sorted(sums.items()):
        doc = _summed(key[0], key[1:3], key[3], key[4], [total], earlier.get(key))
        rows.append(_row(WINDOW_KEY, key, doc, now, fleet=fleet))
        fleets.setdefault((fleet, REBUILT, *key[1:]), []).append(total)
    for i in range(0, len(rows), 1000):
        _upsert(conn, telemetry_windows, WINDOW_KEY, rows[i:i + 1000])
    f = fleet_windows.c
    for key in [k for k in fleets if k[5] >= cursor]:
        conn.execute(sa.delete(fleet_windows).where(
            f.fleet == key[0], f.model_name == key[2], f.model_version == key[3],
            f.window_s == key[4], f.window_start == key[5]))
    stored = _stored(conn, fleet_windows, FLEET_KEY, [k for k in fleets if k[5] < cursor])
    _upsert(conn, fleet_windows, FLEET_KEY, [
        _row(FLEET_KEY, key, _summed(f"fleet:{key[0]}", key[2:4], key[4], key[5], docs,
                                     stored.get(key)), now)
        for key, docs in sorted(fleets.items())])
    return len(rows)


def rebuild(engine: Engine, sizes: Sizes, start: float, end: float, now: float,
            fleets: Sequence[str] | None = None, chunk_s: float = 3600.0) -> int:
    """Recompute the windows that start in ``[start, end)`` from ``messages``, replacing
    what is stored; the rows written. For history ingest did not sum (an import, data from
    before an upgrade): run it while ingest is not adding to those windows, ``end`` at or
    before the ``since`` of the windows ingest keeps. A window that starts before ``start``
    is left alone (its first messages are not read). The span is read ``chunk_s`` at a
    time; it counts as covered when it reaches the windows ingest keeps, or none are kept."""
    from cloud_sync.store.engine import transaction

    written, pairs = 0, set()
    cursor = start
    while cursor < end:
        upto = min(end, cursor + chunk_s)
        with engine.connect() as conn:
            sums = _sum_span(conn, sizes, cursor, upto, fleets)
            conn.rollback()
        with transaction(engine) as conn:
            written += _write_chunk(conn, sums, start, cursor, now)
        pairs |= {(fleet, key[3]) for key, (fleet, _total) in sums.items()}
        cursor = upto
    with transaction(engine) as conn:
        kept = covered(conn)
        for fleet, size in sorted(pairs):
            since = kept.get((fleet, size))
            if since is None or since <= end:
                stmt = UPSERTS[conn.dialect.name](window_coverage)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=["fleet", "window_s"],
                    set_={"since": min(since if since is not None else math.inf,
                                       start - FUTURE_MARGIN_S)}),
                    {"fleet": fleet, "window_s": size, "since": start - FUTURE_MARGIN_S})
            else:
                log.warning("windows of fleet %s before %s are not complete: ingest keeps them "
                            "only since then; rebuild up to there", fleet, since)
    return written
