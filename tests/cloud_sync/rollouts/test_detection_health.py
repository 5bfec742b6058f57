"""Rollout health of a detector (issue 19), canary against control, through the real state
machine on SQLite and PostgreSQL: telemetry rows are made by ingest's own row builder from
1.3 messages whose ``detection`` blocks count simulated frames (``cloud_sync.sim.detection``).
A detector that finds nothing and one that finds boxes everywhere are halted and rolled
back; a healthy one is promoted; a canary's noise halts nothing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sqlalchemy as sa

from cloud_sync.rollouts.health import Context, Figures, judge
from cloud_sync.rollouts.machine import controller_step
from cloud_sync.rollouts.policy import RolloutPolicy, Thresholds
from cloud_sync.rollouts.store import create_rollout, rollout_doc
from cloud_sync.sim.detection import DetectorWorld, detection_reference, detection_window
from cloud_sync.store import message_row, transaction
from cloud_sync.store.schema import artifacts, bundles, messages, models
from edge_agent import protocol as p
from edge_agent.contracts import ModelState
from tests.cloud_sync.rollouts.helpers import add_devices, result

DEVICES = ["d1", "d2", "d3", "d4"]
WORLD = DetectorWorld()
TASK = {"kind": "detection", "detection": {
    "layout": "yolov8", "num_classes": WORLD.num_classes, "input_size": list(WORLD.input_size),
    "labels": list(WORLD.labels)}}
_seq = itertools.count(1)


def publish_detector(conn, version: str, sha: str) -> None:
    """A published detector version: its manifest's task block and reference statistics."""
    mid = conn.execute(sa.insert(models).values(
        name="det", version=version, published_at=0.0, metrics={}, lineage={})
        .returning(models.c.id)).scalar()
    conn.execute(sa.insert(artifacts).values(sha256=sha, size=100, path="/x", created_at=0.0))
    conn.execute(sa.insert(bundles).values(
        sha256=sha, model_id=mid, profile="x86-64", format="onnx", precision="fp32", size=100,
        manifest={"task": TASK, "reference_stats": detection_reference(WORLD).to_dict()},
        created_at=0.0))


def det_telemetry(conn, rng, device: str, version: str, ts: float, mode: str,
                  frames: int = 20) -> None:
    """One telemetry row as ingest writes it, from a 1.3 message with a detection block."""
    msg = p.Telemetry(device_id=device, seq=next(_seq), ts=ts, window_s=1.0,
                      model=ModelState(name="det", version=version), inferences=frames,
                      errors=0, latency_ms={"p95": 2.0},
                      detection=detection_window(rng, WORLD, frames, mode))
    msg = p.Telemetry.from_json(msg.to_json())
    conn.execute(sa.insert(messages), [message_row("f1", p.TELEMETRY, msg, ts)])


def _url(sha, ttl, sent_at):
    return f"http://cloud/a/{sha}?expires={int(sent_at + ttl)}"


def _step(engine, now):
    with transaction(engine) as conn:
        return controller_step(conn, _url, now)


def _doc(engine, rid):
    with engine.connect() as conn:
        return rollout_doc(conn, rid)


def _to_baking(engine):
    with transaction(engine) as conn:
        add_devices(conn, DEVICES)
        conn.execute(sa.update(sa.table("devices", sa.column("model_name")))
                     .values(model_name="det"))
        publish_detector(conn, "1", "cd" * 32)
        publish_detector(conn, "2", "ab" * 32)
        rid = create_rollout(conn, "det", "2", "f1", None, RolloutPolicy(
            canary_count=1, waves=[50, 100], bake_s=10, heartbeat_s=5,
            thresholds={"min_inferences": 20}), 0.0)
    _step(engine, 1.0)
    _step(engine, 2.0)
    cmd = next(x["cmd_id"] for x in _doc(engine, rid)["devices"] if x["device_id"] == "d1")
    with transaction(engine) as conn:
        result(conn, "d1", cmd, phase="probation", ts=3.0)
        result(conn, "d1", cmd, phase="committed", ts=3.0)
    _step(engine, 4.0)
    assert _doc(engine, rid)["state"] == "baking"
    return rid


def _traffic(engine, t0, t1, canary_mode, seed=0):
    rng = np.random.default_rng(seed)
    with transaction(engine) as conn:
        for t in range(t0, t1):
            for d in DEVICES:
                det_telemetry(conn, rng, d, "2" if d == "d1" else "1", float(t),
                              canary_mode if d == "d1" else "normal")


@pytest.mark.parametrize(("mode", "failing"), [
    ("none", {"detections_per_frame_ratio", "empty_rate_increase"}),
    ("everywhere", {"detections_per_frame_ratio", "score_drop"}),
])
def test_a_blind_or_trigger_happy_detector_is_halted_and_rolled_back(engine, mode, failing):
    rid = _to_baking(engine)
    _traffic(engine, 4, 15, mode)
    _step(engine, 14.0)
    doc = _doc(engine, rid)
    assert doc["state"] == "halted", doc["timeline"]
    figs = doc["verdict"]["figures"]
    assert figs["task"] == "detection"
    reasons = " ".join(doc["verdict"]["reasons"])
    assert "detections per frame, ratio to control" in reasons
    if mode == "none":
        assert figs["detections_per_frame_ratio"] == 0 and figs["empty_rate_increase"] > 0.7
        assert "< 0.333" in reasons and "empty-frame rate increase" in reasons
    else:
        assert figs["detections_per_frame_ratio"] > 10 and figs["score_drop"] > 0.3
        assert "> 3" in reasons
    assert all(figs["p_values"][k] < 1e-6 for k in failing)
    assert figs["canary"]["frames"] == 11 * 20 and figs["control"]["devices"] == 3
    _step(engine, 15.0)
    report = _step(engine, 16.0)
    rollbacks = [o for o in report.outgoing if o.doc["type"] == "rollback"]
    assert [o.device_id for o in rollbacks] == ["d1"]
    with transaction(engine) as conn:
        result(conn, "d1", rollbacks[0].cmd_id, ok=True, phase=None, ts=16.0, ctype="rollback")
    _step(engine, 17.0)
    assert _doc(engine, rid)["state"] == "rolled_back"


def test_a_healthy_detector_goes_on_to_the_next_wave(engine):
    rid = _to_baking(engine)
    _traffic(engine, 4, 15, "normal")
    _step(engine, 14.0)
    doc = _doc(engine, rid)
    assert (doc["state"], doc["wave"]) == ("wave", 1), doc["verdict"]
    figs = doc["verdict"]["figures"]
    assert 0.7 < figs["detections_per_frame_ratio"] < 1.4
    assert figs["detection_class_basis"].startswith("distance to own reference")


def _figures(rng, mode: str, frames: int, devices: int = 1) -> Figures:
    from cloud_sync.rollouts.health import _DetectionSums

    out, sums = Figures(devices=devices, inferences=frames), _DetectionSums()
    out.last_seen = {f"d{i}": 0.0 for i in range(devices)}
    for _ in range(frames // 10):
        sums.add(out, detection_window(rng, WORLD, 10, mode).to_dict())
    sums.finish(out)
    return out


def _past_a_limit(f: dict, t: Thresholds) -> bool:
    ratio = f["detections_per_frame_ratio"]
    return ratio > t.max_detections_ratio or ratio < t.min_detections_ratio or \
        f["empty_rate_increase"] > t.max_empty_rate_increase or \
        (f["score_drop"] or 0) > t.max_score_drop or \
        (f["detection_class_distance"] or 0) > t.max_class_distance


def test_canary_noise_seldom_halts():
    """Canaries of 10 frames of a healthy detector against 100 control frames, 200 draws:
    about 5% of them have a figure past its limit by chance, but with the p-value gate
    (``health_alpha`` 0.01, frames as the unit) at most 1% are judged bad (measured: 0.5%)."""
    rng, t = np.random.default_rng(1), Thresholds(min_inferences=10)
    bad = past = 0
    for _ in range(200):
        verdict = judge(_figures(rng, "normal", 10), _figures(rng, "normal", 100, 3), [], t,
                        0.0, 5.0, 0.0, Context(task="detection"))
        bad += verdict.outcome == "bad"
        past += _past_a_limit(verdict.figures, t)
    assert bad <= 2 and past >= 5, (bad, past)


def test_detector_thresholds_refuse_nonsense():
    with pytest.raises(ValueError, match=r"min_detections_ratio .* must be below"):
        Thresholds(min_detections_ratio=2, max_detections_ratio=1)
    with pytest.raises(ValueError, match="health_alpha"):
        Thresholds(health_alpha=0)
