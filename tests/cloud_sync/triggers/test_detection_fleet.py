"""A detector fleet through a private Mosquitto and a real ingest worker (issue 19), on SQLite
and PostgreSQL (COPY): 1.3 telemetry with ``detection`` blocks, generic ``values``, samples
carrying detections, and old 1.1 messages are stored; the controller scores the detector's
kinds (frames as the unit) and fires on the devices whose class mix drifted, not on the
others; the trigger's samples export holds the detector's samples."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import sqlalchemy as sa

from cloud_sync.sim.detection import (
    DetectorWorld,
    detection_window,
    draw_frames,
    sample_detections,
)
from cloud_sync.store import transaction
from cloud_sync.store.schema import drift_scores, messages, samples
from cloud_sync.triggers.controller import controller_step
from cloud_sync.triggers.queries import get_trigger
from edge_agent import protocol as p
from edge_agent.contracts import EncodedInput, ModelRef, ModelState
from edge_agent.contracts.telemetry import ValueWindow
from tests.cloud_sync.ingest.conftest import Publisher, count, wait_until
from tests.cloud_sync.rollouts.test_detection_health import publish_detector

WINDOW_S = 10.0
WORLD = DetectorWorld()


def _telemetry(device: str, seq: int, ts: float, mode: str, rng) -> bytes:
    return p.Telemetry(device_id=device, seq=seq, ts=ts, window_s=2.0, incarnation="i1",
                       model=ModelState(name="det", version="2"), inferences=40, errors=0,
                       detection=detection_window(rng, WORLD, 40, mode)).to_json()


def _sample(device: str, seq: int, ts: float, rng) -> bytes:
    image = rng.random((1, 3, 64, 64), dtype=np.float32)
    return p.Sample(device_id=device, seq=seq, ts=ts, incarnation="i1", reason="low_confidence",
                    model=ModelRef(name="det", version="2"),
                    input=EncodedInput(dtype="float32", shape=[1, 3, 64, 64],
                                       data=base64.b64encode(image.tobytes()).decode()),
                    detections=sample_detections(draw_frames(rng, WORLD, 1)[0])).to_json()


def _legacy(device: str) -> bytes:
    """A 1.1 classifier telemetry (no incarnation, no task blocks), as old agents send."""
    return json.dumps({"v": "1.1", "device_id": device, "seq": 1, "ts": time.time(),
                       "model": {"name": "old", "version": "1"}, "window_s": 1.0,
                       "inferences": 5, "errors": 0, "class_counts": {"1": 5},
                       "confidence": {"edges": [0, 0.5, 1], "counts": [1, 4], "mean": 0.7}}
                      ).encode()


def _generic(device: str) -> bytes:
    return p.Telemetry(device_id=device, seq=1, ts=time.time(), window_s=1.0,
                       model=ModelState(name="reg", version="1"), inferences=10, errors=0,
                       values=[ValueWindow(name="y", edges=[0.0, 1.0, 2.0], counts=[0, 6, 4, 0],
                                           mean=1.1)]).to_json()


def test_a_detector_fleet_is_stored_scored_and_fires_on_drift(engine, make_cfg, thread_worker,
                                                               mqtt_broker):
    policy = {"window_s": WINDOW_S, "k": 2, "n": 3, "min_devices": 2, "actions": []}
    cfg = make_cfg(triggers={"default": policy})
    with transaction(engine) as conn:
        publish_detector(conn, "2", "ab" * 32)
    thread_worker(cfg)
    now = time.time()
    start = (now // WINDOW_S - 3) * WINDOW_S
    rng, items = np.random.default_rng(0), []
    devices = [f"cam-{i}" for i in range(6)]
    for d_index, device in enumerate(devices):
        mode = "drifted" if d_index < 2 else "normal"
        for k in range(15):  # 5 messages of 40 frames per 10 s window, 3 windows
            ts = start + 1.0 + 2.0 * k
            items.append((p.topic("f1", device, p.TELEMETRY),
                          _telemetry(device, k + 1, ts, mode, rng)))
        items.append((p.topic("f1", device, p.SAMPLES), _sample(device, 1, start + 5, rng)))
    items += [(p.topic("f1", "old-1", p.TELEMETRY), _legacy("old-1")),
              (p.topic("f1", "reg-1", p.TELEMETRY), _generic("reg-1"))]
    publisher = Publisher(mqtt_broker.port)
    publisher.send(items)
    publisher.close()
    wait_until(lambda: count(engine, "SELECT count(*) FROM messages WHERE kind = 'telemetry'")
               == 6 * 15 + 2 and count(engine, "SELECT count(*) FROM samples") == 6, 30,
               "every message stored")
    assert count(engine, "SELECT count(*) FROM quarantine") == 0
    with engine.connect() as conn:
        row = conn.execute(sa.select(messages).where(messages.c.device_id == "cam-3")
                           .order_by(messages.c.seq).limit(1)).one()
        assert row.frames == 40 and row.detections == sum(row.payload["detection"]["score_hist"])
        assert row.confidence_mean is None and row.payload["detection"]["count_edges"][0] == 0
        legacy = conn.execute(sa.select(messages).where(messages.c.device_id == "old-1")).one()
        assert legacy.confidence_mean == 0.7 and legacy.frames is None
        generic = conn.execute(sa.select(messages.c.payload).where(
            messages.c.device_id == "reg-1")).scalar()
        assert generic["values"][0]["counts"] == [0, 6, 4, 0]
        kept = conn.execute(sa.select(samples.c.detections, samples.c.payload)
                            .where(samples.c.device_id == "cam-0")).one()
        assert kept.detections == len(kept.payload["detections"]) and \
            kept.payload["prediction"] is None
    with transaction(engine) as conn:
        report = controller_step(conn, cfg, start + 3 * WINDOW_S)
    assert len(report.fired) == 1, report.to_dict()
    with engine.connect() as conn:
        trigger = get_trigger(conn, report.fired[0])
        kinds = set(conn.execute(sa.select(drift_scores.c.kind).where(
            drift_scores.c.model_name == "det")).scalars())
        fleet_counts = conn.execute(sa.select(drift_scores.c.n_eff, drift_scores.c.n_raw).where(
            drift_scores.c.scope == "fleet", drift_scores.c.kind == "det_class")).first()
    assert kinds == {"input", "det_count", "det_score", "det_class", "det_area"}
    assert set(trigger["devices_affected"]) == {"cam-0", "cam-1"}
    drifting = {k for d in trigger["evidence"]["devices"] for k in d["kinds"]}
    assert "det_class" in drifting and trigger["samples_count"] == 6  # the version's samples
    assert fleet_counts.n_eff < fleet_counts.n_raw  # effective frames, not boxes
