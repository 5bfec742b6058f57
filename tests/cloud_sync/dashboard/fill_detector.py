"""A store filled with a detector fleet (issue 19), the way a running deployment fills it:
four cameras on detector ``det`` 1 whose telemetry carries ``detection`` blocks (rows made
by ingest's own row builder), two of them drifting to another class mix halfway, drift
scored by the real controller step, and a rollout of ``det`` 2, a detector that finds
nothing, halted on model health by the real rollout state machine."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from cloud_sync.config import CloudConfig
from cloud_sync.rollouts.machine import controller_step as rollout_step
from cloud_sync.rollouts.policy import RolloutPolicy
from cloud_sync.rollouts.store import create_rollout, rollout_doc
from cloud_sync.sim.detection import DetectorWorld, detection_window
from cloud_sync.store import message_row, transaction
from cloud_sync.store.schema import devices, messages
from cloud_sync.triggers.controller import controller_step as trigger_step
from edge_agent import protocol as p
from edge_agent.contracts import ModelState
from tests.cloud_sync.rollouts.test_detection_health import publish_detector

WINDOW_S = 60.0
WINDOWS = 12
CAMERAS = [f"cam-{i:02d}" for i in range(1, 5)]
DRIFTING = CAMERAS[:2]
WORLD = DetectorWorld()
_seq = itertools.count(1)


@dataclass(frozen=True)
class DetectorFill:
    """What the fill made."""

    cameras: list[str]
    drifting: list[str]
    trigger_id: int
    halted: int


def detector_cfg(data_dir, db_url: str) -> CloudConfig:
    """60 s windows, drift in 2 of the last 3 on 2 devices fires (no actions)."""
    policy = {"window_s": WINDOW_S, "k": 2, "n": 3, "min_devices": 2, "actions": []}
    return CloudConfig.from_dict({"data_dir": str(data_dir), "db": db_url,
                                  "triggers": {"default": policy}})


def _row(conn, rng, device: str, version: str, ts: float, mode: str, frames: int = 40):
    lat = 3.0 + rng.gamma(4.0, 0.3)
    msg = p.Telemetry(device_id=device, seq=next(_seq), ts=ts, window_s=10.0,
                      model=ModelState(name="det", version=version), inferences=frames,
                      errors=0, latency_ms={"p50": round(lat, 2), "p95": round(lat * 1.5, 2)},
                      detection=detection_window(rng, WORLD, frames, mode))
    conn.execute(sa.insert(messages), [message_row("cams", p.TELEMETRY,
                                                   p.Telemetry.from_json(msg.to_json()), ts)])


def _history(engine, cfg: CloudConfig, start: float, rng) -> int:
    with transaction(engine) as conn:
        conn.execute(sa.insert(devices), [
            {"id": d, "fleet": "cams", "profile": "x86-64", "model_name": "det",
             "model_version": "1", "agent_version": "0.1.0", "state": "online",
             "registered_by": "cli", "created_at": start, "first_seen": start,
             "last_seen": start + WINDOWS * WINDOW_S} for d in CAMERAS])
        publish_detector(conn, "1", "cd" * 32)
        publish_detector(conn, "2", "ab" * 32)
        for w in range(WINDOWS):
            for k in range(0, int(WINDOW_S), 10):
                for d in CAMERAS:
                    mode = "drifted" if d in DRIFTING and w >= WINDOWS // 2 else "normal"
                    _row(conn, rng, d, "1", start + w * WINDOW_S + k + 1, mode)
    fired = []
    for w in range(1, WINDOWS + 1):
        with transaction(engine) as conn:
            fired += trigger_step(conn, cfg, start + w * WINDOW_S + 1).fired
    assert len(fired) == 1, f"expected one trigger, got {fired}"
    return fired[0]


def _url(sha, ttl, sent_at):
    return f"http://cloud/a/{sha}?expires={int(sent_at + ttl)}"


def _answer(conn, device: str, cmd_id: str, ts: float) -> None:
    for phase in ("probation", "committed"):
        conn.execute(sa.insert(messages).values(
            device_id=device, fleet="cams", kind="cmd/result", seq=next(_seq), ts=ts,
            received_at=ts, payload={"cmd_id": cmd_id, "type": "update", "ok": True,
                                     "error": None, "detail": {"phase": phase}}))


def _blind_rollout(engine, t0: float, rng) -> int:
    policy = RolloutPolicy(canary_count=1, waves=[50, 100], bake_s=60, heartbeat_s=30,
                           thresholds={"min_inferences": 20})
    with transaction(engine) as conn:
        rid = create_rollout(conn, "det", "2", "cams", None, policy, t0)
    t, on_new = t0, set()
    for _ in range(10):
        t += 1
        with transaction(engine) as conn:
            rollout_step(conn, _url, t)
            doc = rollout_doc(conn, rid)
            for d in doc["devices"]:
                if d["state"] == "sent":
                    _answer(conn, d["device_id"], d["cmd_id"], t)
                    on_new.add(d["device_id"])
        if doc["state"] == "baking":
            break
    with transaction(engine) as conn:
        for k in range(0, 70, 5):
            for d in CAMERAS:
                new = d in on_new
                _row(conn, rng, d, "2" if new else "1", t + k, "none" if new else "normal")
    with transaction(engine) as conn:
        rollout_step(conn, _url, t + 70)
        state = rollout_doc(conn, rid)["state"]
    assert state == "halted", f"rollout {rid} is {state}, expected halted"
    return rid


def fill_detector_fleet(engine, cfg: CloudConfig, now: float) -> DetectorFill:
    """Fill an empty, migrated store (see the module docstring)."""
    rng = np.random.default_rng(0)
    start = math.floor(now / WINDOW_S) * WINDOW_S - (WINDOWS + 12) * WINDOW_S  # before it
    trigger_id = _history(engine, cfg, start, rng)
    halted = _blind_rollout(engine, now - 600, rng)
    return DetectorFill(CAMERAS, DRIFTING, trigger_id, halted)
