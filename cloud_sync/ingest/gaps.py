"""Sequence heads and gaps: which seqs of a (device, incarnation, kind) never arrived.

Seqs count in a device's outbox file; a new file (a re-imaged device, a lost outbox)
counts from 1 again under a new ``incarnation`` (protocol 1.2; ``""`` before), so every
key here includes it: a new incarnation opens no gap and is no duplicate of the old one.
``seq_heads`` holds the highest seq stored per (device, incarnation, kind). For each batch, seqs
above the head that skip numbers open gaps (``seq_gaps`` rows, ``from_seq..to_seq``
inclusive); a late seq at or below the head closes (or splits) the gap holding it, so
out-of-order arrival leaves no false gap. The first seqs ever seen of a pair open no
gap below them. Heads are read ``FOR UPDATE`` in key order (PostgreSQL, in one
statement: ``store.arrays``; SQLite's ``BEGIN IMMEDIATE`` already serialises
writers), so two workers holding messages of the same device never both judge the
same seqs. The portable reads' ``IN`` lists of (device, incarnation, kind) run in chunks
(``store.chunks``): a large batch would pass the stores' bound-parameter caps.

Status messages are not gap-checked (the agent reserves a block of status seqs per
connection, so they jump on purpose); their head, raised only for statuses applied to
the registry (``ingest.batch``), orders them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.store import arrays
from cloud_sync.store.chunks import rows_in_chunks
from cloud_sync.store.schema import seq_gaps, seq_heads
from cloud_sync.store.writes import UPSERTS

Key = tuple[str, str, str]  # (device_id, incarnation, kind)
KEY_COLUMNS = (seq_heads.c.device_id, seq_heads.c.incarnation, seq_heads.c.kind)


@dataclass
class GapReport:
    """Seqs newly found missing and seqs that arrived late into a known gap, per kind."""

    missing: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)

    def add(self, counts: dict[str, int], kind: str, n: int) -> None:
        """Add ``n`` to ``counts[kind]`` when positive."""
        if n > 0:
            counts[kind] = counts.get(kind, 0) + n


def read_heads(conn: Connection, keys: Iterable[Key]) -> dict[Key, int]:
    """Current heads of ``keys``, locked until commit (row locks in key order)."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    return HEAD_READERS.get(conn.dialect.name, _read_heads)(conn, keys)


def _read_heads(conn: Connection, keys: list[Key]) -> dict[Key, int]:
    """Portable: SQLite's ``BEGIN IMMEDIATE`` already holds the only write lock."""
    def query(chunk: list[Key]) -> sa.Select:
        return (sa.select(*KEY_COLUMNS, seq_heads.c.head)
                .where(sa.tuple_(*KEY_COLUMNS).in_(chunk)).order_by(*KEY_COLUMNS))

    return {(d, i, k): h for d, i, k, h in rows_in_chunks(conn, keys, query)}


def write_heads(conn: Connection, heads: Mapping[Key, int], now: float) -> None:
    """Raise heads to the given values (never lowers one)."""
    if not heads:
        return
    HEAD_WRITERS.get(conn.dialect.name, _write_heads)(conn, heads, now)


def _write_heads(conn: Connection, heads: Mapping[Key, int], now: float) -> None:
    stmt = UPSERTS[conn.dialect.name](seq_heads)
    stmt = stmt.on_conflict_do_update(
        index_elements=["device_id", "incarnation", "kind"],
        set_={"head": sa.case((stmt.excluded.head > seq_heads.c.head, stmt.excluded.head),
                              else_=seq_heads.c.head),
              "updated_at": stmt.excluded.updated_at})
    conn.execute(stmt, [{"device_id": d, "incarnation": i, "kind": k, "head": h,
                         "updated_at": now} for (d, i, k), h in sorted(heads.items())])


HEAD_READERS: dict[str, Callable[[Connection, list[Key]], dict[Key, int]]] = {
    "postgresql": arrays.read_heads}
HEAD_WRITERS: dict[str, Callable[[Connection, Mapping[Key, int], float], None]] = {
    "postgresql": arrays.write_heads}


def missing_ranges(base: int, seqs: list[int]) -> list[tuple[int, int]]:
    """Inclusive ranges absent between ``base`` (exclusive) and the largest of ``seqs``."""
    ranges, last = [], base
    for s in sorted(set(seqs)):
        if s > last + 1:
            ranges.append((last + 1, s - 1))
        last = max(last, s)
    return ranges


def track(conn: Connection, seqs: Mapping[Key, list[int]], now: float) -> GapReport:
    """Record new gaps, close filled ones and raise the heads for a batch's seqs."""
    report, heads = GapReport(), read_heads(conn, seqs)
    new_gaps, late, new_heads = [], {}, {}
    for key, batch in sorted(seqs.items()):
        head = heads.get(key)
        base = min(batch) - 1 if head is None else head
        for low, high in missing_ranges(base, [s for s in batch if s > base]):
            new_gaps.append({"device_id": key[0], "incarnation": key[1], "kind": key[2],
                             "from_seq": low, "to_seq": high, "detected_at": now})
            report.add(report.missing, key[2], high - low + 1)
        if head is not None and min(batch) <= head:
            late[key] = sorted({s for s in batch if s <= head})
        new_heads[key] = max(batch) if head is None else max(head, max(batch))
    _insert_gaps(conn, new_gaps)
    _fill_gaps(conn, late, report, now)
    write_heads(conn, {k: h for k, h in new_heads.items() if h != heads.get(k)}, now)
    return report


def _insert_gaps(conn: Connection, rows: list[dict]) -> None:
    if rows:
        stmt = UPSERTS[conn.dialect.name](seq_gaps).on_conflict_do_nothing(
            index_elements=["device_id", "incarnation", "kind", "from_seq"])
        conn.execute(stmt, rows)


def _fill_gaps(conn: Connection, late: Mapping[Key, list[int]], report: GapReport,
               now: float) -> None:
    """Split or delete the gaps that late seqs fall into (duplicates fall into none)."""
    if not late:
        return
    def query(chunk: list[Key]) -> sa.Select:
        return sa.select(seq_gaps).where(sa.tuple_(
            seq_gaps.c.device_id, seq_gaps.c.incarnation, seq_gaps.c.kind).in_(chunk))

    for gap in list(rows_in_chunks(conn, sorted(late), query)):
        inside = [s for s in late[(gap.device_id, gap.incarnation, gap.kind)]
                  if gap.from_seq <= s <= gap.to_seq]
        if not inside:
            continue
        conn.execute(sa.delete(seq_gaps).where(seq_gaps.c.id == gap.id))
        rest = missing_ranges(gap.from_seq - 1, [*inside, gap.to_seq + 1])
        _insert_gaps(conn, [{"device_id": gap.device_id, "incarnation": gap.incarnation,
                             "kind": gap.kind, "from_seq": low, "to_seq": high,
                             "detected_at": gap.detected_at} for low, high in rest])
        report.add(report.filled, gap.kind, len(inside))

