"""Per-device drift windows, summed by ingest as telemetry arrives (issue 21).

Each new telemetry message (never a redelivery: ``writes.insert_new_messages`` says which
rows were new) is added to its device's window of its fleet's trigger policy: the window
``[k w, (k + 1) w)`` that holds its ``ts``, ``w`` the policy's ``window_s``, keyed by
(device, model, version, w, window start), the aligned windows the drift step scores
(``triggers.scoring.last_windows``). A row holds the ``WindowCounts`` of its messages as
JSON (``drift.window_codec``), so the drift step reads one row per device window and
never a payload.

Writers: an ingest batch has already locked its devices' registry rows, in key order,
before it gets here (``ingest.batch``), so no two batches update one device's windows at
once; the read-add-write of a row is safe without locking it again.

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
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from cloud_sync.drift.window import DriftError, WindowCounts, from_telemetry, pool
from cloud_sync.drift.window_codec import from_doc, to_doc
from cloud_sync.store.schema import messages, telemetry_windows, window_coverage
from edge_agent import protocol
from edge_agent.errors import EdgekitError

log = logging.getLogger(__name__)

UPSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
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
    windows: list[WindowCounts]


def _parts(sizes: Sizes, items: Iterable[tuple[str, protocol.Telemetry]]) -> dict[Key, Part]:
    parts: dict[Key, Part] = {}
    for fleet, message in items:
        if message.model is None:
            continue
        size = sizes(fleet)
        key = (message.device_id, message.model.name, message.model.version, size,
               window_start(message.ts, size))
        parts.setdefault(key, Part(fleet, [])).windows.append(from_telemetry(message))
    return parts


def _stored(conn: Connection, keys: Sequence[Key]) -> dict[Key, dict[str, Any]]:
    """The counts documents of ``keys`` already stored."""
    c = telemetry_windows.c
    found: dict[Key, dict[str, Any]] = {}
    wanted = set(keys)
    starts = [k[4] for k in keys]
    ids = sorted({k[0] for k in keys})
    for i in range(0, len(ids), 500):
        for row in conn.execute(sa.select(*(c[n] for n in WINDOW_KEY), c.counts).where(
                c.device_id.in_(ids[i:i + 500]), c.window_start >= min(starts),
                c.window_start <= max(starts))):
            key = tuple(row[:5])
            if key in wanted:
                found[key] = row.counts
    return found


def _summed(key: Key, part: Part, doc: dict[str, Any] | None) -> dict[str, Any]:
    """The stored window plus this batch's messages, as the row's document."""
    if doc is not None and ERROR in doc:
        return doc
    device, name, version, size, start = key
    windows = list(part.windows)
    if doc is not None:
        windows.insert(0, from_doc(doc, device, name, version, start, start + size))
    try:
        return to_doc(pool(windows, device, start, start + size))
    except DriftError as exc:  # e.g. two bin layouts in one window: kept, and reported
        log.warning("window %s of %s %s %s not summed: %s", start, device, name, version, exc)
        return {ERROR: str(exc)[:300], "inferences": 0, "messages": 0}


def _upsert(conn: Connection, rows: list[dict[str, Any]], replace: bool = False) -> None:
    stmt = UPSERTS[conn.dialect.name](telemetry_windows)
    stmt = stmt.on_conflict_do_update(index_elements=list(WINDOW_KEY), set_={
        name: stmt.excluded[name] for name in ("fleet", "messages", "inferences", "counts",
                                               "updated_at")})
    conn.execute(stmt, rows)


def _row(key: Key, fleet: str, doc: dict[str, Any], now: float) -> dict[str, Any]:
    return {**dict(zip(WINDOW_KEY, key, strict=True)), "fleet": fleet,
            "messages": doc.get("messages", 0), "inferences": doc.get("inferences", 0),
            "counts": doc, "updated_at": now}


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
        now: float) -> int:
    """Add new telemetry ``(fleet, message)`` to its device windows; the rows written."""
    parts = _parts(sizes, items)
    if not parts:
        return 0
    record_coverage(conn, {(p.fleet, k[3]) for k, p in parts.items()}, now)
    stored = _stored(conn, sorted(parts))
    rows = [_row(key, part.fleet, _summed(key, part, stored.get(key)), now)
            for key, part in sorted(parts.items())]
    _upsert(conn, rows)
    return len(rows)


def covered(conn: Connection) -> dict[tuple[str, float], float]:
    """(fleet, window size) -> since when ingest keeps those windows."""
    return {(r.fleet, r.window_s): r.since for r in conn.execute(sa.select(window_coverage))}


def is_complete(coverage: dict[tuple[str, float], float], fleet: str, size: float,
                start: float) -> bool:
    """Whether the stored windows of ``fleet`` and ``size`` hold all of ``[start, ...)``."""
    since = coverage.get((fleet, size))
    return since is not None and start >= since + FUTURE_MARGIN_S


def read(conn: Connection, start: float, end: float) -> Iterable[Any]:
    """Rows with ``start <= window_start < end`` (every size and fleet)."""
    c = telemetry_windows.c
    return conn.execute(sa.select(
        c.fleet, c.device_id, c.model_name, c.model_version, c.window_s, c.window_start,
        c.counts).where(c.window_start >= start, c.window_start < end))


def counts_of(row: Any) -> WindowCounts:
    """A stored row as ``WindowCounts`` (raises ``DriftError`` for one that failed)."""
    doc = row.counts
    if ERROR in doc:
        raise DriftError(f"window {row.window_start:g} of {row.device_id}: {doc[ERROR]}")
    return from_doc(doc, row.device_id, row.model_name, row.model_version, row.window_start,
                    row.window_start + row.window_s, frozenset([row.device_id]))


def _sum_span(conn: Connection, sizes: Sizes, start: float, end: float,
              fleets: Sequence[str] | None) -> dict[Key, tuple[str, WindowCounts | None]]:
    """Every telemetry message with ``start <= ts < end``, streamed and summed by window
    (a window that cannot be summed is kept as None)."""
    c = messages.c
    query = sa.select(c.fleet, c.payload).where(
        c.kind == protocol.TELEMETRY, c.ts >= start, c.ts < end, c.fleet.is_not(None))
    if fleets is not None:
        query = query.where(c.fleet.in_(list(fleets)))
    sums: dict[Key, tuple[str, WindowCounts | None]] = {}
    for row in conn.execution_options(stream_results=True, yield_per=2000).execute(query):
        try:
            message = protocol.Telemetry.from_dict(row.payload)
        except EdgekitError:
            continue
        for key, part in _parts(sizes, [(row.fleet, message)]).items():
            fleet, total = sums.get(key, (part.fleet, None))
            if key in sums and total is None:
                continue
            try:
                sums[key] = (fleet, pool([total, *part.windows] if total else part.windows,
                                         key[0], key[4], key[4] + key[3]))
            except DriftError:
                sums[key] = (fleet, None)
    return sums


def _merged(key: Key, total: WindowCounts | None, doc: dict[str, Any] | None
            ) -> dict[str, Any]:
    if total is None:
        return {ERROR: "telemetry on different bins", "inferences": 0, "messages": 0}
    return _summed(key, Part("", [total]), doc)


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
            # a window begun in an earlier chunk of this run: add to what that chunk wrote
            earlier = _stored(conn, [k for k in sums if k[4] < cursor and k[4] >= start])
            rows = [_row(key, fleet, _merged(key, total, earlier.get(key)), now)
                    for key, (fleet, total) in sorted(sums.items()) if key[4] >= start]
            for i in range(0, len(rows), 1000):
                _upsert(conn, rows[i:i + 1000])
        written += len(rows)
        pairs |= {(r["fleet"], r["window_s"]) for r in rows}
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
