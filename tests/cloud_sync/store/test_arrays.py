"""PostgreSQL's array forms of ingest's per-batch statements give what their portable
twins give, on the same database (the twins run on PostgreSQL too)."""

from __future__ import annotations

import pytest

from cloud_sync.ingest import batch, gaps
from cloud_sync.registry import Sighting, add_device, get_device, record_status
from cloud_sync.registry import devices as registry
from cloud_sync.store import arrays, open_store, transaction
from tests.databases import _pg_schema_url


@pytest.fixture()
def pg(pg_admin_url):
    """A migrated store in a fresh PostgreSQL schema (the array forms are PostgreSQL's)."""
    for url in _pg_schema_url(pg_admin_url):
        engine = open_store(url)
        yield engine
        engine.dispose()


def test_heads_are_read_and_raised_as_the_portable_form_does(pg):
    keys = [("d1", "", "telemetry"), ("d1", "", "samples"), ("d2", "", "telemetry"),
            ("d2", "b7", "telemetry")]
    with transaction(pg) as conn:
        arrays.write_heads(conn, {keys[0]: 5, keys[2]: 9, keys[3]: 2}, 1.0)
        arrays.write_heads(conn, {keys[0]: 3, keys[2]: 12}, 2.0)  # a head is never lowered
        wanted = sorted(keys)
        assert arrays.read_heads(conn, wanted) == gaps._read_heads(conn, wanted) == {
            ("d1", "", "telemetry"): 5, ("d2", "", "telemetry"): 12,
            ("d2", "b7", "telemetry"): 2}


def test_record_seen_registers_new_devices_and_widens_known_ones(pg):
    with transaction(pg) as conn:
        add_device(conn, "known", "f", now=100.0)  # registered, never seen: NULL times
        first = arrays.record_seen(conn, {"known": ("f", 50.0, 60.0), "new": ("f", 70.0, 80.0)})
        registry.set_incarnations(conn, {"new": "b7"})
        again = arrays.record_seen(conn, {"known": ("f", 55.0, 40.0), "new": ("f", 65.0, 90.0)})
        assert (first, again) == ({"known": "", "new": ""}, {"known": "", "new": "b7"})
        known, new = get_device(conn, "known"), get_device(conn, "new")
    assert (known.first_seen, known.last_seen, known.registered_by) == (50.0, 60.0, "cli")
    assert (new.first_seen, new.last_seen, new.state, new.registered_by) == (
        65.0, 90.0, "online", "auto")


def test_record_seen_dispatches_to_the_array_form_on_postgresql(pg, monkeypatch):
    seen = []
    monkeypatch.setitem(registry.SEEN_WRITERS, "postgresql", lambda _c, spans: seen.append(spans))
    with transaction(pg) as conn:
        registry.record_seen(conn, [Sighting("a", "f", 2.0), Sighting("a", "f", 1.0)])
    assert seen == [{"a": ("f", 1.0, 2.0)}]


def test_id_lookups_match_the_portable_form(pg):
    with transaction(pg) as conn:
        arrays.record_seen(conn, {d: ("f", 1.0, 1.0) for d in ("a", "b", "c")})
        record_status(conn, "b", "stale")
        record_status(conn, "c", "offline")
        ids = ["a", "b", "c", "ghost"]
        assert arrays.fleets_of(conn, ids) == batch._fleets_of(conn, ids) == dict.fromkeys(
            "abc", "f")
        states = batch.REVIVED_STATES
        assert sorted(arrays.in_states(conn, ids, states)) == sorted(
            batch._in_states(conn, ids, states)) == ["b", "c"]


def test_array_literals_round_trip_exactly(pg):
    texts = ["a", 'b"c', "d\\e", "", "x,y", "{z}", "NULL", " sp ", "ünï"]
    numbers = [0.1, 1e-300, 1.7976931348623157e308, -2.5, 1796000000.123456]
    with pg.connect() as conn:
        got = conn.exec_driver_sql("SELECT %(t)s::text[], %(f)s::float8[], %(i)s::bigint[]", {
            "t": arrays.text_array(texts), "f": arrays.number_array(numbers),
            "i": arrays.number_array([0, -1, 2 ** 62])}).one()
    assert got == (texts, numbers, [0, -1, 2 ** 62])
