"""``IN`` lists over a whole fleet, in chunks.

A bound ``IN`` list costs one parameter per value, and stores cap parameters per
statement (psycopg/PostgreSQL 65,535; SQLite 32,766 unless built with more): a rollout
over a 70,000-device fleet would fail there. Queries whose lists grow with the fleet
run once per chunk of ``IN_CHUNK`` values and concatenate the rows; each value lands in
exactly one chunk, so per-value results (and their order within a chunk's query) are
kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
IN_CHUNK = 1000


def chunked(values: Iterable[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size``."""
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def rows_in_chunks(conn: Any, values: Sequence[T],
                   statement: Callable[[list[T]], Any]) -> Iterator[Any]:
    """The rows of ``statement(chunk)`` for every chunk of ``values``, one chunk at a time."""
    for chunk in chunked(values):
        yield from conn.execute(statement(chunk))
