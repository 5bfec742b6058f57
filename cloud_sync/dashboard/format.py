"""How values read on a page: times as "12 s ago" (ISO on hover), numbers rounded, and any
JSON document (trigger evidence, verdict figures) turned into tables of plain cells, so a
page never shows a raw dict or a JSON blob."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

EPOCH_MIN, EPOCH_MAX = 946_684_800, 4_102_444_800  # 2000 .. 2100: a number read as a time
TIME_KEYS = ("_at", "ts", "time", "last_seen", "first_seen", "window")
FIRST = ("reason", "device_id", "channel", "window", "windows", "kind", "verdict", "score",
         "threshold", "critical_value", "floor")  # PostgreSQL's JSONB does not keep key order
UNITS = ((86_400, "d"), (3_600, "h"), (60, "min"), (1, "s"))


def iso(ts: float | None) -> str:
    """UTC ISO 8601 of Unix seconds ('' for None)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def span(start: float, end: float) -> str:
    """'2026-11-22 06:38:00 → 06:39:00 UTC' (the end's date only when it differs)."""
    a = datetime.fromtimestamp(start, timezone.utc)
    b = datetime.fromtimestamp(end, timezone.utc)
    tail = b.strftime("%H:%M:%S" if a.date() == b.date() else "%Y-%m-%d %H:%M:%S")
    return f"{a:%Y-%m-%d %H:%M:%S} → {tail} UTC"


def ago(ts: float | None, now: float) -> str:
    """'12 s ago', '5 min ago', 'in 3 h' ('never' for None)."""
    if ts is None:
        return "never"
    delta = now - ts
    amount = abs(delta)
    size, unit = next(((s, u) for s, u in UNITS if amount >= s), (1, "s"))
    text = f"{int(amount // size)} {unit}"
    return f"{text} ago" if delta >= 0 else f"in {text}"


def number(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, thousands separated; text as is."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def looks_like_time(key: str, value: Any) -> bool:
    """True for a number in the epoch range under a time-like key."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and EPOCH_MIN <= value <= EPOCH_MAX and any(k in key for k in TIME_KEYS))


def label(key: str) -> str:
    """'devices_affected' -> 'devices affected'."""
    return str(key).replace("_", " ")


@dataclass
class Cell:
    """One table cell: text, or a time (``ts`` set), or a nested table."""

    text: str = ""
    ts: float | None = None
    table: Table | None = None


@dataclass
class Table:
    """Rows of cells under column headers (``headers`` empty: a key/value table)."""

    headers: list[str] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)


def cell(key: str, value: Any) -> Cell:
    """``value`` as a cell: nested documents become nested tables, lists of numbers a list."""
    if looks_like_time(key, value):
        return Cell(ts=float(value))
    if isinstance(value, dict):
        return Cell(table=key_values(value))
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, dict) for v in value):
            return Cell(table=records(value))
        if _is_span(value):
            return Cell(text=span(*value))
        if value and all(isinstance(v, list | tuple) for v in value):
            return Cell(text="; ".join(cell(key, v).text for v in value))
        return Cell(text=", ".join(number(v) for v in value) if value else "none")
    return Cell(text=number(value))


def _is_span(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2 and all(
        looks_like_time("_ts", v) for v in value)


def ordered(keys: list[str]) -> list[str]:
    """``keys`` with the well-known ones first (in ``FIRST``'s order), the rest as given."""
    rank = {k: i for i, k in enumerate(FIRST)}
    return sorted(keys, key=lambda k: rank.get(k, len(FIRST)))


def key_values(doc: dict[str, Any]) -> Table:
    """A key/value table of a document."""
    return Table(rows=[[Cell(text=label(k)), cell(k, doc[k])] for k in ordered(list(doc))])


def records(items: list[dict[str, Any]]) -> Table:
    """A table with one row per document, columns the union of their keys in first-seen order."""
    columns: list[str] = []
    for item in items:
        columns += [k for k in item if k not in columns]
    columns = ordered(columns)
    return Table(headers=[label(c) for c in columns],
                 rows=[[cell(c, item.get(c)) for c in columns] for item in items])


def sections(doc: dict[str, Any]) -> tuple[Table, list[tuple[str, Table]]]:
    """A document as a summary table of its plain fields and one titled table per nested
    field (what a trigger's evidence page shows)."""
    cells = {k: cell(k, v) for k, v in doc.items()}
    plain = {k: doc[k] for k, c in cells.items() if c.table is None}
    nested = [(label(k), c.table) for k, c in cells.items() if c.table is not None]
    return key_values(plain), nested
