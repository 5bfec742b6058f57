"""The incremental drift step (``triggers.incremental``) on SQLite and PostgreSQL: each
device window is scored once, again only after a late message changed it; a step scores
at most ``device_windows_per_step`` and says more wait; the decision on stored verdicts
is the decision on every score; the pooled fleet from the writers' parts is the pool of
the device windows; ``serve`` runs a step that says more again within a second."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from cloud_sync.serve.jobs import MORE_AFTER_S, Housekeeping
from cloud_sync.store import transaction, windows
from cloud_sync.store.schema import drift_scores, fleet_windows
from cloud_sync.store.writes import insert_new_messages
from cloud_sync.triggers.controller import controller_step, score_step
from edge_agent import protocol
from tests.cloud_sync.triggers.conftest import T0, WINDOW_S
from tests.cloud_sync.triggers.helpers import (
    devices,
    keep_windows,
    publish_reference,
    store_windows,
    telemetry_at,
)

NOW = T0 + 3 * WINDOW_S + 1


def _fill(engine, count: int = 8, drifted: int = 3):
    devs = devices(count, drifted=drifted)
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devs, T0, 3, WINDOW_S, per_window=3)
    return devs


def _step(engine, cfg, now=NOW):
    with transaction(engine) as conn:
        return controller_step(conn, cfg, now)


def _decision(engine, cfg, now=NOW):
    with engine.connect() as conn:
        scored, report = score_step(conn, cfg, now)
        conn.rollback()
    item = next(s for s in scored if s.key == ("f1", "sim-model", "1"))
    return item.decision.fire, item.decision.devices, report


def _scores(engine) -> dict:
    with engine.connect() as conn:
        return {(r.scope_key, r.kind, r.window_start): (r.verdict, r.score)
                for r in conn.execute(sa.select(drift_scores))}


def test_each_device_window_is_scored_once_until_a_late_message_changes_it(
        engine, make_trigger_cfg):
    cfg = make_trigger_cfg()
    devs = _fill(engine)
    first = _step(engine, cfg)
    assert first.to_dict()["device_windows_scored"] == 8 * 3 and len(first.fired) == 1
    again = _step(engine, cfg, NOW + 5)
    assert again.to_dict()["device_windows_scored"] == 0 and again.fired == []
    fire, named, _ = _decision(engine, cfg, NOW + 6)  # from the stored verdicts alone
    assert fire and named == ("dev-000", "dev-001", "dev-002")
    with transaction(engine) as conn:  # a late message of dev-005's second window
        keep_windows(conn, [telemetry_at(devs[5], T0 + WINDOW_S + 30, 1.0, 200)], WINDOW_S,
                     T0)
    late = _step(engine, cfg, NOW + 7)
    assert late.to_dict()["device_windows_scored"] == 1


def test_a_step_scores_at_most_its_budget_and_the_end_result_is_the_same(
        engine, make_trigger_cfg):
    _fill(engine)
    cfg = make_trigger_cfg()
    budget = cfg.model_copy(update={"triggers": cfg.triggers.model_copy(
        update={"device_windows_per_step": 5})})
    reports = []
    for i in range(10):
        reports.append(_step(engine, budget, NOW + i).to_dict())
        if not reports[-1]["more"]:
            break
    assert [r["device_windows_scored"] for r in reports] == [5, 5, 5, 5, 4]
    assert [r["more"] for r in reports] == [True] * 4 + [False]
    assert sum(len(r["fired"]) for r in reports) == 1
    budgeted = _scores(engine)
    with transaction(engine) as conn:
        conn.execute(sa.delete(drift_scores))
        conn.execute(sa.text("DELETE FROM triggers"))
        conn.execute(sa.text("UPDATE telemetry_windows SET scored_version = 0"))
    _step(engine, cfg, NOW)
    assert _scores(engine).keys() == budgeted.keys()
    for key, (verdict, score) in _scores(engine).items():
        assert budgeted[key][0] == verdict, key
        if key[0].startswith("dev-"):  # a device's score does not depend on the step
            assert budgeted[key][1] == score


def test_the_fleet_from_several_writers_parts_is_the_pool_of_its_devices(
        engine, make_trigger_cfg):
    cfg = make_trigger_cfg()
    devs = devices(6, drifted=2)
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devs[:3], T0, 3, WINDOW_S)
    with transaction(engine) as conn:  # the other devices through another ingest worker
        rows = [telemetry_at(d, T0 + w * WINDOW_S + 10, 1.0, 200) for w in range(3)
                for d in devs[3:]]
        insert_new_messages(conn, rows)
        windows.add(conn, lambda fleet: WINDOW_S, [
            (r["fleet"], protocol.Telemetry.from_dict(r["payload"])) for r in rows],
            T0 - 1000, writer="worker-b")
    with engine.connect() as conn:
        parts = {r[0] for r in conn.execute(sa.select(fleet_windows.c.part))}
    assert parts == {"", "worker-b"}
    _step(engine, cfg)
    incremental = {k: v for k, v in _scores(engine).items() if k[0] == "fleet:f1"}
    with transaction(engine) as conn:  # the same windows, scored from every device window
        conn.execute(sa.text("UPDATE window_coverage SET since = :s"), {"s": NOW})
    _step(engine, cfg, NOW + 1)
    full = {k: v for k, v in _scores(engine).items() if k[0] == "fleet:f1"}
    assert incremental.keys() == full.keys() and len(full) == 3 * 3
    for key, (verdict, score) in full.items():
        assert incremental[key][0] == verdict and abs(incremental[key][1] - score) < 1e-9


def test_serve_runs_a_job_that_says_more_again_within_a_second(engine, make_trigger_cfg):
    runs: list[float] = []

    def job(_engine, _now):
        runs.append(time.monotonic())
        return {"more": len(runs) < 3}

    keeper = Housekeeping(make_trigger_cfg(), engine, lambda: True, [(60.0, job, "drift")])
    stop = threading.Event()
    thread = threading.Thread(target=keeper.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while len(runs) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(MORE_AFTER_S + 1.0)  # no fourth run: the third said nothing waits
    stop.set()
    thread.join(5)
    assert len(runs) == 3
    assert runs[2] - runs[0] < 2 * MORE_AFTER_S + 1.5
