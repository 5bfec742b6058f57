"""The ``unknown_field:<kind>:<path>`` counters in ``ingest_stats``, kept to the top N plus
``unknown_field:other``, however many keys devices invent.

At write time (``cap_unknown_fields``) a batch's new keys get a row of their own while
fewer than N exist; the rest are added to ``unknown_field:other``. Workers racing may
overshoot N a little; retention (``fold_unknown_fields``) then keeps the N largest and
adds the others' counts to ``unknown_field:other``, so the counters stay exact in sum.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloud_sync.store.chunks import chunked
from cloud_sync.store.engine import transaction
from cloud_sync.store.schema import ingest_stats
from cloud_sync.store.writes import bump_counters

PREFIX = "unknown_field:"
OTHER = PREFIX + "other"
KEY_CHARS = 96  # ingest_stats.counter's width


def counter_name(kind: str, path: str) -> str:
    """The counter of one unknown field path of one message kind."""
    return f"{PREFIX}{kind}:{path}"[:KEY_CHARS]


def _stored(conn: Connection) -> list[tuple[str, int]]:
    c = ingest_stats.c
    return [(name, value) for name, value in conn.execute(
        sa.select(c.counter, c.value)
        .where(c.counter.like(PREFIX.replace("_", r"\_") + "%", escape="\\"), c.counter != OTHER)
        .order_by(c.value.desc(), c.counter))]


def cap_unknown_fields(conn: Connection, seen: Iterable[tuple[str, str]], limit: int) -> Counter:
    """Counter deltas for the unknown fields ``seen`` as (kind, path): fields that have a
    row, or fit under ``limit`` rows (most frequent first), count as themselves; the
    others as ``unknown_field:other``."""
    wanted = Counter(counter_name(kind, path) for kind, path in seen)
    if not wanted:
        return wanted
    have = {name for name, _value in _stored(conn)}
    room = limit - len(have)
    out: Counter = Counter()
    for name, n in sorted(wanted.items(), key=lambda kv: (-kv[1], kv[0])):
        if name in have or room > 0:
            room -= name not in have
            out[name] += n
        else:
            out[OTHER] += n
    return out


def fold_unknown_fields(engine: Engine, limit: int, now: float) -> int:
    """Keep the ``limit`` largest unknown-field counters; add the rest to
    ``unknown_field:other`` and delete them (a transaction per chunk); returns how many."""
    with engine.connect() as conn:
        over = _stored(conn)[limit:]
    for chunk in chunked([name for name, _value in over]):  # IN_CHUNK names per transaction
        with transaction(engine) as conn:
            gone = conn.execute(sa.delete(ingest_stats).where(
                ingest_stats.c.counter.in_(chunk))
                .returning(ingest_stats.c.value)).scalars().all()
            bump_counters(conn, {OTHER: sum(gone)}, now)
    return len(over)
