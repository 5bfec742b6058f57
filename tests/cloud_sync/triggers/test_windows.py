"""The drift step reads ingest's window rows, never a payload, once they cover its windows,
and scores exactly what it scored from the messages: all windows from rows, all from
messages, or a mix (coverage that starts inside the checked windows)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event

from cloud_sync.store import transaction
from cloud_sync.store.schema import window_coverage
from cloud_sync.store.windows import FUTURE_MARGIN_S
from cloud_sync.triggers.controller import score_step
from tests.cloud_sync.triggers.conftest import T0, WINDOW_S
from tests.cloud_sync.triggers.helpers import devices, publish_reference, store_windows

NOW = T0 + 3 * WINDOW_S + 1


def _fill(engine) -> None:
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devices(6, drifted=3), T0, 3, WINDOW_S, per_window=3)
        store_windows(conn, devices(2, fleet="f2", prefix="g-"), T0, 3, WINDOW_S)


def _score(engine, cfg):
    with engine.connect() as conn:
        scored, report = score_step(conn, cfg, NOW)
        conn.rollback()
    rows = sorted((r["scope_key"], r["kind"], r["window_start"], r["verdict"], r["score"],
                   r["inferences"]) for item in scored for r in item.rows)
    fired = {item.key: (item.decision.fire, item.decision.devices) for item in scored}
    return rows, fired, report


def _cover_from(engine, since: float | None) -> None:
    with transaction(engine) as conn:
        if since is None:
            conn.execute(sa.delete(window_coverage))
        else:
            conn.execute(sa.update(window_coverage).values(since=since))


def test_rows_messages_and_a_mix_give_the_same_scores(engine, make_trigger_cfg):
    cfg = make_trigger_cfg()
    _fill(engine)
    from_rows, fired, report = _score(engine, cfg)
    assert report.sources == {"windows_from_rows": 8 * 3, "windows_from_messages": 0}
    assert fired[("f1", "sim-model", "1")] == (True, ("dev-000", "dev-001", "dev-002"))

    _cover_from(engine, T0 + WINDOW_S - FUTURE_MARGIN_S)  # kept from the second window on
    mixed, fired_mixed, report = _score(engine, cfg)
    assert report.sources == {"windows_from_rows": 8 * 2, "windows_from_messages": 8}

    _cover_from(engine, None)  # nothing kept: every window from the messages, as before
    from_messages, fired_messages, report = _score(engine, cfg)
    assert report.sources == {"windows_from_rows": 0, "windows_from_messages": 8 * 3}

    assert len(from_rows) == 8 * 3 * 3 + 2 * 3 * 3  # devices and fleets, windows, kinds
    for got in (mixed, from_messages):
        assert [(*r[:4], r[5]) for r in got] == [(*r[:4], r[5]) for r in from_rows]
        for a, b in zip(got, from_rows, strict=True):
            assert (a[4] is None and b[4] is None) or abs(a[4] - b[4]) < 1e-9
    assert fired == fired_mixed == fired_messages


def test_a_covered_step_reads_no_message(engine, make_trigger_cfg):
    cfg = make_trigger_cfg()
    _fill(engine)
    _cover_from(engine, T0 - 10 * WINDOW_S)  # ingest has kept windows for a while
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        _score(engine, cfg)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert any("FROM telemetry_windows" in s for s in seen)
    assert not [s for s in seen if "FROM messages" in s]
