"""The controller step: drift on a share of devices fires exactly one trigger with its
evidence; stable telemetry (>= 1,000 device-windows, small ones included) fires none;
no reference is recorded, not fired; two controllers at once still fire once."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import sqlalchemy as sa

from cloud_sync.sim.reference import synthetic_reference
from cloud_sync.store import open_store, transaction
from cloud_sync.triggers.controller import controller_step
from cloud_sync.triggers.queries import ScoreFilter, drift_page, get_trigger, list_triggers
from tests.cloud_sync.triggers.conftest import T0, WINDOW_S
from tests.cloud_sync.triggers.helpers import devices, publish_reference, store_windows


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()


def test_drift_on_a_share_of_devices_fires_one_trigger_with_evidence(engine, make_trigger_cfg):
    cfg = make_trigger_cfg(actions=[{"kind": "command", "command": ["true"]}])
    devs = devices(10, drifted=4)
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devs, T0, 3, WINDOW_S, samples=2)
    now = T0 + 3 * WINDOW_S + 1
    with transaction(engine) as conn:
        report = controller_step(conn, cfg, now)
    assert len(report.fired) == 1 and report.skipped == {}
    scores = _count(engine, "drift_scores")
    assert scores == (10 + 1) * 3 * 3  # (devices + fleet) x windows x kinds
    with transaction(engine) as conn:  # again: same rows rewritten, no second trigger
        assert controller_step(conn, cfg, now + 5).fired == []
    assert _count(engine, "drift_scores") == scores and _count(engine, "triggers") == 1
    with engine.connect() as conn:
        trigger = get_trigger(conn, report.fired[0])
        listed = list_triggers(conn)
        drifting = drift_page(conn, ScoreFilter(device="dev-000", kind="input"))
    ev = trigger["evidence"]
    assert set(ev["devices_affected"]) == {f"dev-{i:03d}" for i in range(4)}
    assert ev["windows"] == [[T0 + i * WINDOW_S, T0 + (i + 1) * WINDOW_S] for i in range(3)]
    assert ev["top_channels"] and ev["top_channels"][0]["devices"] >= 1
    first = ev["devices"][0]["scores"][0]
    assert {"score", "threshold", "critical_value", "n_eff", "m_eff", "n_raw",
            "m_raw"} <= set(first)
    assert ev["fleet_scores"]["holds"] and "device(s)" in ev["reason"]
    assert listed[0]["id"] == trigger["id"] and listed[0]["actions"][0]["state"] == "pending"
    assert [d["verdict"] for d in drifting] == ["drift"] * 3
    assert drifting[0]["threshold"] >= drifting[0]["critical_value"]
    export = np.load(trigger["samples_export"])
    assert export["inputs"].shape[0] == trigger["samples_count"] == 60
    assert set(export["device"]) == {d.device_id for d in devs}


def test_one_drifting_device_is_below_min_devices(engine, make_trigger_cfg):
    cfg = make_trigger_cfg(fleet_wide=False)
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devices(6, drifted=1), T0, 3, WINDOW_S)
        assert controller_step(conn, cfg, T0 + 3 * WINDOW_S).fired == []


@pytest.mark.slow
def test_stable_period_never_fires(engine, make_trigger_cfg):
    """40 devices x 26 windows = 1,040 device-windows drawn from the reference, a third of
    them small (10 to 60 inferences), scored as they close: zero triggers."""
    cfg = make_trigger_cfg(min_devices=1)
    rng = np.random.default_rng(7)
    sizes = rng.choice([10, 30, 60, 200, 400], size=(40, 26))
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devices(40, seed=100), T0, 26, WINDOW_S, per_window=1,
                      inferences=lambda i, w: int(sizes[i, w]))
    for w in range(3, 27):
        with transaction(engine) as conn:
            assert controller_step(conn, cfg, T0 + w * WINDOW_S).fired == []
    with engine.connect() as conn:
        verdicts = dict(conn.execute(sa.text(
            "SELECT verdict, count(*) FROM drift_scores WHERE scope = 'device' "
            "GROUP BY verdict")).all())
        windows = conn.execute(sa.text(
            "SELECT count(DISTINCT device_id || ':' || CAST(window_start AS VARCHAR)) "
            "FROM drift_scores WHERE scope = 'device'")).scalar()
    assert windows >= 1000 and verdicts.get("insufficient_data", 0) > 0
    assert verdicts.get("drift", 0) <= 5  # rare single-window false alarms, never k of n
    assert _count(engine, "triggers") == 0


def test_version_without_reference_is_recorded_not_fired(engine, make_trigger_cfg):
    cfg = make_trigger_cfg()
    with transaction(engine) as conn:
        store_windows(conn, devices(3, drifted=3), T0, 3, WINDOW_S)
        report = controller_step(conn, cfg, T0 + 3 * WINDOW_S)
        rows = drift_page(conn, ScoreFilter(fleet="f1"))
    assert report.fired == [] and "reference statistics" in report.skipped["f1/sim-model/1"]
    assert {r["verdict"] for r in rows} == {"no_reference"} and len(rows) == 9


def test_two_controllers_at_once_fire_once(engine, make_trigger_cfg, db_url):
    cfg = make_trigger_cfg(actions=[{"kind": "mqtt"}])
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devices(8, drifted=4), T0, 3, WINDOW_S)
    barrier, fired, errors = threading.Barrier(2), [], []

    def controller() -> None:
        own = open_store(db_url)
        try:
            barrier.wait(10)
            with transaction(own) as conn:
                fired.extend(controller_step(conn, cfg, T0 + 3 * WINDOW_S + 2).fired)
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=controller) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(fired) == 1
    assert _count(engine, "triggers") == 1 and _count(engine, "actions") == 1


def test_a_group_that_cannot_be_scored_is_skipped_not_fatal(engine, make_trigger_cfg):
    cfg = make_trigger_cfg()
    other_bins = synthetic_reference().to_dict()
    other_bins["input"]["bin_edges"] = [2 * e for e in other_bins["input"]["bin_edges"]]
    with transaction(engine) as conn:
        publish_reference(conn)
        publish_reference(conn, version="2", reference=other_bins)
        store_windows(conn, devices(4, drifted=4), T0, 3, WINDOW_S)
        store_windows(conn, devices(2, fleet="f2", prefix="odd-", version="2"), T0, 3,
                      WINDOW_S)
        report = controller_step(conn, cfg, T0 + 3 * WINDOW_S)
    assert len(report.fired) == 1 and list(report.skipped) == ["f2/sim-model/2"]
    assert "bin" in report.skipped["f2/sim-model/2"]



def _window(verdicts: dict[str, str]):
    from cloud_sync.drift.scores import DriftResult

    return {kind: DriftResult(kind, "stat", "device", "m", "1", 0.0, 60.0, 500, verdict)
            for kind, verdict in verdicts.items()}


def test_only_the_policy_kinds_count():
    """Input drift alone fires the default policy, not one that counts output and
    confidence only (a model that takes the new inputs in its stride)."""
    from cloud_sync.triggers.decide import decide, evidence
    from cloud_sync.triggers.policy import TriggerPolicy
    from cloud_sync.triggers.scoring import GroupScores

    inputs_only = _window({"input": "drift", "output": "ok", "confidence": "ok"})
    answers = _window({"input": "ok", "output": "ok", "confidence": "drift"})
    bounds = [(0.0, 60.0), (60.0, 120.0), (120.0, 180.0)]

    def group(window):
        return GroupScores(("f", "m", "1"), bounds, {d: [window] * 3 for d in ("a", "b")},
                           [window] * 3)

    default = TriggerPolicy(k=2, n=3, min_devices=2)
    answering = TriggerPolicy(k=2, n=3, min_devices=2, kinds=["output", "confidence"])
    assert decide(group(inputs_only), default).fire
    assert not decide(group(inputs_only), answering).fire
    decision = decide(group(answers), answering)
    assert decision.fire and "output/confidence drift" in decision.reason
    ev = evidence(group(answers), decision, answering)
    assert ev["rule"]["kinds"] == ["output", "confidence"]
    with pytest.raises(ValueError, match="kinds"):
        TriggerPolicy(kinds=["latency"])
