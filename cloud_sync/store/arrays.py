"""PostgreSQL's one-statement forms of ingest's per-batch reads and upserts.

A batch touches up to a few hundred devices. Written the portable way (an
``IN`` list of bound tuples, an executemany upsert), PostgreSQL gets one bound
parameter per value (SQLAlchemy compiles a new statement for every batch size)
or one executed row per device, and a batch spends most of its time there.
Here each is one fixed SQL text whose values travel as a few typed arrays and
are spread back into rows by ``unnest``: one round trip, a statement the server
prepares once per connection. Lookups join the unnested ids (a hash join), not
``= ANY(array)``, which the planner may run as a scan testing every id per row.
Each function returns what its portable twin returns; the callers
(``ingest.gaps``, ``registry.devices``, ``ingest.batch``) pick one by dialect.

The arrays travel as PostgreSQL array literals built here (``text_array``,
``number_array``), cast by the SQL: psycopg's own list adaptation inspects every
element in Python and took a fifth of a batch's write time (cProfile, ingest benchmark).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.engine import Connection

Key = tuple[str, str, str]  # (device_id, incarnation, kind)


def text_array(values: Sequence[str]) -> str:
    """A ``text[]`` literal: every element double-quoted, backslash and quote escaped."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def number_array(values: Sequence[float | int]) -> str:
    """A ``bigint[]``/``float8[]`` literal (``repr`` keeps every float's exact value)."""
    return "{" + ",".join(repr(v) for v in values) + "}"


_READ_HEADS = """
SELECT h.device_id, h.incarnation, h.kind, h.head FROM seq_heads AS h
JOIN unnest(%(devices)s::text[], %(incarnations)s::text[], %(kinds)s::text[])
  AS k(device_id, incarnation, kind)
  ON h.device_id = k.device_id AND h.incarnation = k.incarnation AND h.kind = k.kind
ORDER BY h.device_id, h.incarnation, h.kind
FOR UPDATE OF h"""

_WRITE_HEADS = """
INSERT INTO seq_heads (device_id, incarnation, kind, head, updated_at)
SELECT * FROM unnest(%(devices)s::text[], %(incarnations)s::text[], %(kinds)s::text[],
                     %(heads)s::bigint[], %(at)s::float8[])
ON CONFLICT (device_id, incarnation, kind) DO UPDATE
  SET head = GREATEST(seq_heads.head, EXCLUDED.head), updated_at = EXCLUDED.updated_at"""

_RECORD_SEEN = """
INSERT INTO devices (id, fleet, registered_by, state, first_seen, last_seen, created_at)
SELECT s.id, s.fleet, 'auto', 'online', s.first_seen, s.last_seen, s.first_seen
FROM unnest(%(ids)s::text[], %(fleets)s::text[], %(first)s::float8[], %(last)s::float8[])
  AS s(id, fleet, first_seen, last_seen)
ON CONFLICT (id) DO UPDATE
  SET last_seen = GREATEST(devices.last_seen, EXCLUDED.last_seen),
      first_seen = LEAST(devices.first_seen, EXCLUDED.first_seen)
RETURNING id, incarnation"""

_FLEETS = """
SELECT d.id, d.fleet FROM devices AS d JOIN unnest(%(ids)s::text[]) AS u(id) ON d.id = u.id"""

_IN_STATES = """
SELECT d.id FROM devices AS d JOIN unnest(%(ids)s::text[]) AS u(id) ON d.id = u.id
WHERE d.state = ANY(%(states)s::text[])"""


def read_heads(conn: Connection, keys: Sequence[Key]) -> dict[Key, int]:
    """Heads of ``keys`` (sorted, unique), locked ``FOR UPDATE`` in key order."""
    rows = conn.exec_driver_sql(_READ_HEADS, {
        "devices": text_array([d for d, _i, _k in keys]),
        "incarnations": text_array([i for _d, i, _k in keys]),
        "kinds": text_array([k for _d, _i, k in keys])})
    return {(d, i, k): h for d, i, k, h in rows}


def write_heads(conn: Connection, heads: Mapping[Key, int], now: float) -> None:
    """Raise heads to the given values (never lowers one); rows written in key order."""
    keys = sorted(heads)
    conn.exec_driver_sql(_WRITE_HEADS, {
        "devices": text_array([d for d, _i, _k in keys]),
        "incarnations": text_array([i for _d, i, _k in keys]),
        "kinds": text_array([k for _d, _i, k in keys]),
        "heads": number_array([heads[key] for key in keys]),
        "at": number_array([now] * len(keys))})


def record_seen(conn: Connection, spans: Mapping[str, tuple[str, float, float]]
                ) -> dict[str, str]:
    """Upsert ``device -> (fleet, first, last)``: new devices auto-registered ``online``,
    known ones' ``first_seen``/``last_seen`` widened (PostgreSQL's LEAST/GREATEST skip NULL).
    Returns each device's stored ``incarnation`` (its row now locked until commit)."""
    ids = sorted(spans)
    return dict(conn.exec_driver_sql(_RECORD_SEEN, {
        "ids": text_array(ids), "fleets": text_array([spans[i][0] for i in ids]),
        "first": number_array([spans[i][1] for i in ids]),
        "last": number_array([spans[i][2] for i in ids])}).all())


def fleets_of(conn: Connection, ids: Sequence[str]) -> dict[str, str]:
    """``device -> fleet`` of the registered ones among ``ids``."""
    return dict(conn.exec_driver_sql(_FLEETS, {"ids": text_array(ids)}).all())


def in_states(conn: Connection, ids: Sequence[str], states: Sequence[str]) -> list[str]:
    """Those of ``ids`` whose device ``state`` is one of ``states``."""
    return list(conn.exec_driver_sql(_IN_STATES, {"ids": text_array(ids),
                                                  "states": text_array(states)}).scalars())
