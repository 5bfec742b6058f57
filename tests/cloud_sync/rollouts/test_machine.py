"""The rollout state machine on SQLite and PostgreSQL, rows inserted directly: promotion
wave by wave, halts on failures and on model health, rollback confirmed per device,
offline policies, abort, and steps that repeat without acting twice."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cloud_sync.rollouts.machine import controller_step
from cloud_sync.rollouts.policy import RolloutPolicy
from cloud_sync.rollouts.store import abort_rollout, create_rollout, rollout_doc
from cloud_sync.store import transaction
from tests.cloud_sync.rollouts.helpers import SHA, add_devices, publish_model, result, telemetry

DEVICES = ["d1", "d2", "d3", "d4"]


def _url(sha, ttl, sent_at):
    return f"http://cloud/a/{sha}?expires={int(sent_at + ttl)}"


def _setup(engine, **policy):
    policy = {"canary_count": 1, "waves": [50, 100], "bake_s": 10, "heartbeat_s": 5,
              "thresholds": {"min_inferences": 20}, **policy}
    with transaction(engine) as conn:
        add_devices(conn, DEVICES)
        publish_model(conn)
        return create_rollout(conn, "tiny", "2", "f1", None, RolloutPolicy(**policy), 0.0)


def _step(engine, now):
    with transaction(engine) as conn:
        return controller_step(conn, _url, now)


def _doc(engine, rid):
    with engine.connect() as conn:
        return rollout_doc(conn, rid)


def _states(engine, rid):
    return {d["device_id"]: d["state"] for d in _doc(engine, rid)["devices"]}


def _traffic(engine, t0, t1, new=(), conf=0.8, classes=None):
    with transaction(engine) as conn:
        for t in range(int(t0), int(t1)):
            for d in DEVICES:
                on_new = d in new
                telemetry(conn, d, "2" if on_new else "1", float(t),
                          confidence=conf if on_new else 0.8,
                          classes=classes if on_new else None)


def _install(engine, rid, device, t):
    cmd = next(x["cmd_id"] for x in _doc(engine, rid)["devices"] if x["device_id"] == device)
    with transaction(engine) as conn:
        result(conn, device, cmd, phase="probation", ts=t)
        result(conn, device, cmd, phase="committed", ts=t)


def test_a_good_version_is_promoted_wave_by_wave(engine):
    rid = _setup(engine)
    assert _doc(engine, rid)["waves"] == [1, 2, 4]
    _step(engine, 1.0)
    report = _step(engine, 2.0)
    assert [o.device_id for o in report.outgoing] == ["d1"]
    doc = report.outgoing[0].doc
    assert doc["type"] == "update" and doc["args"]["sha256"] == SHA
    assert doc["expires_at"] == 2.0 + 600 and doc["cmd_id"] == _doc(engine, rid)["devices"][0][
        "cmd_id"]
    resend = _step(engine, 3.0)  # no answer yet: the same command again, same cmd_id
    assert [o.cmd_id for o in resend.outgoing] == [doc["cmd_id"]]
    _install(engine, rid, "d1", 3.0)
    _step(engine, 4.0)
    assert _doc(engine, rid)["state"] == "baking"
    _traffic(engine, 4, 16, new={"d1"})
    _step(engine, 10.0)
    assert _doc(engine, rid)["state"] == "baking"  # healthy but still baking
    _step(engine, 15.0)
    assert (_doc(engine, rid)["state"], _doc(engine, rid)["wave"]) == ("wave", 1)
    report = _step(engine, 16.0)
    assert [o.device_id for o in report.outgoing] == ["d2"]
    _install(engine, rid, "d2", 16.0)
    _step(engine, 17.0)
    _traffic(engine, 17, 29, new={"d1", "d2"})
    _step(engine, 28.0)
    assert _step(engine, 29.0).outgoing and _doc(engine, rid)["wave"] == 2
    for d in ("d3", "d4"):
        _install(engine, rid, d, 29.0)
    _step(engine, 30.0)
    _traffic(engine, 30, 42, new=set(DEVICES))
    _step(engine, 41.0)
    doc = _doc(engine, rid)
    assert doc["state"] == "done", doc["timeline"]
    assert set(_states(engine, rid).values()) == {"committed"}
    assert doc["verdict"]["outcome"] == "ok"
    assert [e["state"] for e in doc["timeline"]] == [
        "pending", "canary", "baking", "wave", "baking", "wave", "baking", "done"]


def _to_baking(engine, **policy):
    rid = _setup(engine, **policy)
    _step(engine, 1.0)
    _step(engine, 2.0)
    _install(engine, rid, "d1", 3.0)
    _step(engine, 4.0)
    return rid


def _confirm_rollback(engine, rid, now):
    report = _step(engine, now)
    rollbacks = [o for o in report.outgoing if o.doc["type"] == "rollback"]
    with transaction(engine) as conn:
        for o in rollbacks:
            result(conn, o.device_id, o.cmd_id, ok=True, phase=None, ts=now, ctype="rollback")
    _step(engine, now + 1)
    return rollbacks


def test_a_useless_model_is_halted_on_health_and_rolled_back(engine):
    rid = _to_baking(engine)
    _traffic(engine, 4, 8, new={"d1"}, conf=0.1, classes={"0": 20})
    _step(engine, 8.0)
    assert _doc(engine, rid)["state"] == "baking"  # soft checks: judged on the whole bake
    _traffic(engine, 8, 14, new={"d1"}, conf=0.1, classes={"0": 20})
    _step(engine, 14.0)
    doc = _doc(engine, rid)
    assert doc["state"] == "halted"
    verdict = doc["verdict"]
    assert verdict["kind"] == "health" and verdict["figures"]["confidence_drop"] > 0.6
    assert verdict["figures"]["class_distance"] > 0.5
    assert verdict["figures"]["control"]["devices"] == 3
    _step(engine, 15.0)
    rollbacks = _confirm_rollback(engine, rid, 16.0)
    assert [o.device_id for o in rollbacks] == ["d1"]
    doc = _doc(engine, rid)
    assert doc["state"] == "rolled_back"
    assert _states(engine, rid) == {"d1": "rollback_confirmed", "d2": "skipped",
                                    "d3": "skipped", "d4": "skipped"}


def test_nan_outputs_halt_the_canary(engine):
    rid = _to_baking(engine)
    with transaction(engine) as conn:
        for t in range(4, 8):
            telemetry(conn, "d1", "2", float(t), non_finite=10)
            telemetry(conn, "d2", "1", float(t))
    _step(engine, 8.0)
    verdict = _doc(engine, rid)["verdict"]
    assert verdict["figures"]["non_finite_rate"] == 0.5
    assert any("NaN/inf" in r for r in verdict["reasons"])


def test_too_little_data_keeps_baking_then_halts(engine):
    rid = _to_baking(engine, max_bake_s=30)
    _traffic(engine, 4, 5, new={"d1"})  # 20 inferences: enough; now too few on the canary
    with transaction(engine) as conn:
        conn.execute(sa.text("DELETE FROM messages WHERE device_id = 'd1'"))
    _step(engine, 20.0)
    assert _doc(engine, rid)["state"] == "baking"
    _step(engine, 40.0)
    doc = _doc(engine, rid)
    assert doc["state"] == "halted" and "not enough data" in doc["verdict"]["reasons"][0]


def test_a_failed_update_counts_against_the_canary(engine):
    rid = _setup(engine, canary_count=2, thresholds={"max_failure_pct": 40})
    _step(engine, 1.0)
    _step(engine, 2.0)
    cmds = {x["device_id"]: x["cmd_id"] for x in _doc(engine, rid)["devices"]}
    _install(engine, rid, "d1", 3.0)
    with transaction(engine) as conn:
        result(conn, "d2", cmds["d2"], ok=False, phase=None, ts=3.0)
    _step(engine, 4.0)
    doc = _doc(engine, rid)
    assert doc["state"] == "halted"
    assert doc["verdict"]["kind"] == "failures"
    assert doc["verdict"]["figures"]["failed_devices"] == ["d2"]
    assert doc["verdict"]["figures"]["failure_pct"] == 50
    _step(engine, 5.0)
    assert [o.device_id for o in _confirm_rollback(engine, rid, 6.0)] == ["d1"]
    assert _doc(engine, rid)["state"] == "rolled_back"


def test_a_device_that_rolls_back_on_its_own_is_a_failure(engine):
    rid = _setup(engine)
    _step(engine, 1.0)
    _step(engine, 2.0)
    cmd = _doc(engine, rid)["devices"][0]["cmd_id"]
    with transaction(engine) as conn:
        result(conn, "d1", cmd, phase="probation", ts=3.0)
        result(conn, "d1", cmd, ok=False, phase="rolled_back", ts=3.5)
    _step(engine, 4.0)
    assert _states(engine, rid)["d1"] == "rolled_back"
    assert _doc(engine, rid)["verdict"]["figures"]["rolled_back_on_device"] == 1


def test_no_answer_before_the_device_timeout_is_a_failure(engine):
    rid = _setup(engine, command_ttl_s=5, device_timeout_s=10)
    _step(engine, 1.0)
    _step(engine, 2.0)
    _step(engine, 13.0)
    assert _states(engine, rid)["d1"] == "failed"
    assert _doc(engine, rid)["state"] == "halted"


def test_offline_devices_follow_the_policy(engine):
    for policy, expected in (("skip", "skipped"), ("fail", "failed"), ("wait", "pending")):
        device = f"z{policy}"  # one device per rollout: an open rollout holds its devices
        with transaction(engine) as conn:
            add_devices(conn, [device], state="offline")
            publish_model(conn, version=f"w{policy}", sha=policy[0] * 64)
            rid = create_rollout(conn, "tiny", f"w{policy}", None, [device],
                                 RolloutPolicy(canary_count=1, offline=policy), 0.0)
        _step(engine, 1.0)
        _step(engine, 2.0)
        assert _states(engine, rid) == {device: expected}
    with transaction(engine) as conn:
        conn.execute(sa.text("UPDATE devices SET state = 'online' WHERE id = 'zwait'"))
    assert [o.device_id for o in _step(engine, 3.0).outgoing] == ["zwait"]  # not forgotten


def test_abort_halts_and_rolls_back(engine):
    rid = _to_baking(engine)
    with transaction(engine) as conn:
        assert abort_rollout(conn, rid, 5.0) == "halted"
    _step(engine, 6.0)
    assert [o.device_id for o in _confirm_rollback(engine, rid, 7.0)] == ["d1"]
    doc = _doc(engine, rid)
    assert doc["state"] == "rolled_back" and doc["verdict"]["outcome"] == "aborted"
    with transaction(engine) as conn:
        assert abort_rollout(conn, rid, 9.0) == "rolled_back"


def test_policy_checks():
    import pytest

    with pytest.raises(ValueError, match="waves"):
        RolloutPolicy(waves=[50, 40, 100])
    with pytest.raises(ValueError, match="waves"):
        RolloutPolicy(waves=[50])
    assert RolloutPolicy(canary_percent=25, waves=[50, 100]).plan(8) == [2, 4, 8]


@pytest.mark.parametrize(("rollout", "device", "shown"), [
    ("halted", "pending", "not_sent"), ("rolled_back", "pending", "not_sent"),
    ("halted", "committed", "committed"), ("baking", "pending", "pending")])
def test_a_halted_rollouts_pending_devices_read_not_sent(rollout, device, shown):
    from cloud_sync.rollouts.states import shown_device_state

    assert shown_device_state(rollout, device) == shown


def test_the_plan_reads_as_text():
    from cloud_sync.rollouts.store import plan_text

    assert plan_text([1, 2, 4]) == "canary 1; then 2, 4 devices in all"
    assert plan_text([3]) == "canary 3"


def test_a_slower_canary_halts_but_timer_noise_does_not(engine):
    rid = _to_baking(engine)
    with transaction(engine) as conn:
        for t in range(4, 8):
            telemetry(conn, "d1", "2", float(t), p95=0.9)  # 4.5x but 0.7 ms: noise
            telemetry(conn, "d2", "1", float(t), p95=0.2)
    _step(engine, 8.0)
    assert _doc(engine, rid)["state"] == "baking"
    with transaction(engine) as conn:
        for t in range(8, 14):
            telemetry(conn, "d1", "2", float(t), inferences=200, p95=40.0)
            telemetry(conn, "d2", "1", float(t), p95=0.2)
    _step(engine, 14.0)
    verdict = _doc(engine, rid)["verdict"]
    assert any("p95 latency ratio" in r for r in verdict["reasons"]), verdict["reasons"]
    assert verdict["figures"]["latency_baseline"] == "same-profile control"


def _on_other_hardware(engine, before_p95, after_p95):
    """d1 (the canary) is an rpi4 among x86-64 control devices."""
    from cloud_sync.store.schema import artifacts, bundles

    rid = _setup(engine)
    with transaction(engine) as conn:
        conn.execute(sa.text("UPDATE devices SET profile = 'rpi4' WHERE id = 'd1'"))
        mid = conn.execute(sa.text("SELECT model_id FROM bundles")).scalar()
        conn.execute(sa.insert(artifacts).values(sha256="ef" * 32, size=100, path="/z",
                                                 created_at=0.0))
        conn.execute(sa.insert(bundles).values(sha256="ef" * 32, model_id=mid, profile="rpi4",
                                               format="tflite", precision="int8", size=100,
                                               manifest={}, created_at=0.0))
        for t in range(-30, 0):
            telemetry(conn, "d1", "1", float(t), p95=before_p95)
    _step(engine, 1.0)
    _step(engine, 2.0)
    _install(engine, rid, "d1", 3.0)
    _step(engine, 4.0)
    with transaction(engine) as conn:
        for t in range(4, 14):
            telemetry(conn, "d1", "2", float(t), p95=after_p95)
            for d in ("d2", "d3", "d4"):
                telemetry(conn, d, "1", float(t), p95=0.2)
    _step(engine, 14.0)
    return _doc(engine, rid)


def test_a_canary_on_other_hardware_is_compared_with_its_own_latency(engine):
    doc = _on_other_hardware(engine, before_p95=10.0, after_p95=10.5)
    assert doc["state"] == "wave", doc["verdict"]  # 50x the x86 control, but as before
    assert doc["verdict"]["figures"]["latency_baseline"] == "own p95 before the rollout"


def test_a_canary_slower_than_its_own_past_halts(engine):
    doc = _on_other_hardware(engine, before_p95=10.0, after_p95=45.0)
    assert doc["state"] == "halted"
    assert any("p95 latency ratio to control 4.5" in r for r in doc["verdict"]["reasons"])


def _publish_reference(conn, version, classes):
    import json

    import numpy as np

    from cloud_sync.store.schema import artifacts, bundles, models
    from export.refstats import reference_stats

    rng = np.random.default_rng(0)
    outputs = np.eye(10, dtype=np.float32)[rng.choice(10, 400, p=classes)]
    ref = reference_stats(rng.random((400, 1, 8, 8), dtype=np.float32), outputs)
    mid = conn.execute(sa.select(models.c.id).where(models.c.version == version)).scalar()
    if mid is None:
        mid = conn.execute(sa.insert(models).values(
            name="tiny", version=version, published_at=0.0, metrics={}, lineage={})
            .returning(models.c.id)).scalar()
        conn.execute(sa.insert(artifacts).values(sha256="cd" * 32, size=100, path="/y",
                                                 created_at=0.0))
        conn.execute(sa.insert(bundles).values(sha256="cd" * 32, model_id=mid,
                                               profile="x86-64", format="onnx",
                                               precision="fp32", size=100, manifest={},
                                               created_at=0.0))
    conn.execute(sa.update(bundles).where(bundles.c.model_id == mid).values(
        manifest={"reference_stats": json.loads(json.dumps(ref.to_dict()))}))


def test_a_retrained_model_that_fixes_drift_is_not_halted_for_its_new_class_mix(engine):
    """Control (v1, drifted inputs) predicts mostly class 8; the canary (v2, retrained)
    predicts every class as its reference says: far from control, close to its reference."""
    uniform = [0.1] * 10
    rid = _to_baking(engine)
    with transaction(engine) as conn:
        _publish_reference(conn, "1", uniform)
        _publish_reference(conn, "2", uniform)
        even = {str(c): 2 for c in range(10)}
        for t in range(4, 14):
            telemetry(conn, "d1", "2", float(t), classes=even)
            for d in ("d2", "d3", "d4"):
                telemetry(conn, d, "1", float(t), classes={"8": 16, "3": 4})
    _step(engine, 14.0)
    doc = _doc(engine, rid)
    assert doc["state"] == "wave", doc["verdict"]
    figures = doc["verdict"]["figures"]
    assert figures["class_distance"] < 0 and "own reference" in figures["class_distance_basis"]


def test_a_collapsed_model_is_far_from_its_reference(engine):
    rid = _to_baking(engine)
    with transaction(engine) as conn:
        _publish_reference(conn, "1", [0.1] * 10)
        _publish_reference(conn, "2", [0.1] * 10)
        for t in range(4, 14):
            telemetry(conn, "d1", "2", float(t), classes={"0": 20})
            for d in ("d2", "d3", "d4"):
                telemetry(conn, d, "1", float(t), classes={str(c): 2 for c in range(10)})
    _step(engine, 14.0)
    doc = _doc(engine, rid)
    assert doc["state"] == "halted"
    assert any("predicted-class distance beyond control's" in r
               for r in doc["verdict"]["reasons"])


def test_a_silent_canary_device_halts_on_missed_heartbeats(engine):
    rid = _to_baking(engine, canary_count=2, thresholds={"min_inferences": 20,
                                                         "max_missed_heartbeats": 2})
    _install(engine, rid, "d2", 4.0)
    _step(engine, 5.0)
    assert _doc(engine, rid)["state"] == "baking"
    _traffic(engine, 5, 12, new={"d1"})  # d2 on v2 says nothing
    _step(engine, 12.0)
    assert _doc(engine, rid)["state"] == "baking"  # 7 s of silence < 2 x 5 s
    _traffic(engine, 12, 17, new={"d1"})
    _step(engine, 17.0)
    doc = _doc(engine, rid)
    assert doc["state"] == "halted" and "missed heartbeats from d2" in doc["verdict"]["reasons"]


def test_a_health_verdict_reads_a_stable_sample_of_each_side(engine, monkeypatch):
    from cloud_sync.rollouts import machine

    monkeypatch.setattr(machine, "HEALTH_SAMPLE", 2)
    rid = _to_baking(engine)
    _traffic(engine, 4, 14, new={"d1"})
    _step(engine, 14.0)
    doc = _doc(engine, rid)
    control = doc["timeline"][-1]["figures"]["control"]
    assert doc["state"] == "wave" and control["devices"] == 2  # of the three on v1
    picked = machine.sample(["d2", "d3", "d4"], 2, rid)
    assert picked == machine.sample(["d4", "d3", "d2"], 2, rid) == sorted(control["last_seen"])
    assert machine.sample(["d2", "d3"], 5, rid) == ["d2", "d3"]
