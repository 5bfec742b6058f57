"""A store filled the way a running deployment fills it, for the dashboard tests: devices in
several states, simulated telemetry (three devices drift halfway), drift scores and a fired
trigger computed by the real controller step, one rollout promoted through every wave and
one halted on model health by the real rollout state machine. Times are recent (relative to
``now``), so pages read "5 min ago" as they would in use."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import sqlalchemy as sa

from cloud_sync.config import CloudConfig
from cloud_sync.rollouts.machine import controller_step as rollout_step
from cloud_sync.rollouts.policy import RolloutPolicy
from cloud_sync.rollouts.store import create_rollout, rollout_doc
from cloud_sync.store import transaction
from cloud_sync.store.schema import devices, messages
from cloud_sync.triggers.controller import controller_step as trigger_step
from tests.cloud_sync.rollouts.helpers import publish_model
from tests.cloud_sync.triggers.helpers import devices as sim_devices
from tests.cloud_sync.triggers.helpers import publish_reference, store_windows

WINDOW_S = 60.0
WINDOWS = 12
DRIFT_FROM = 6  # the window where the drifting devices start to drift
_seq = itertools.count(1)


@dataclass(frozen=True)
class Filled:
    """What the fill made, for the tests to look for."""

    sim_devices: list[str]
    drifted: list[str]
    trigger_id: int
    promoted: int
    halted: int


def trigger_cfg(data_dir, db_url: str) -> CloudConfig:
    """60 s windows, drift in 2 of the last 3 on at least 2 devices fires."""
    policy = {"window_s": WINDOW_S, "k": 2, "n": 3, "min_devices": 2, "actions": [
        {"kind": "webhook", "url": "http://127.0.0.1:9/retrain", "secret": "s3cret",
         "timeout_s": 0.5}]}
    return CloudConfig.from_dict({"data_dir": str(data_dir), "db": db_url,
                                  "triggers": {"default": policy}})


def _register(conn, ids, fleet, model, version, states, last_seen) -> None:
    conn.execute(sa.insert(devices), [
        {"id": d, "fleet": fleet, "profile": "x86-64", "model_name": model,
         "model_version": version, "agent_version": "0.1.0", "state": s,
         "registered_by": "cli", "created_at": last_seen - 86_400, "first_seen":
             last_seen - 86_400, "last_seen": last_seen - (0 if s == "online" else
                                                           600 if s == "stale" else 7200)}
        for d, s in zip(ids, states, strict=True)])


def _drift_history(engine, cfg: CloudConfig, start: float) -> tuple[list[str], list[str], int]:
    devs = sim_devices(6, fleet="f1")
    drifting = devs[:3]
    with transaction(engine) as conn:
        publish_reference(conn)
        _register(conn, [d.device_id for d in devs], "f1", "sim-model", "1",
                  ["online"] * 4 + ["stale", "offline"], start + WINDOWS * WINDOW_S)
        store_windows(conn, devs, start, DRIFT_FROM, WINDOW_S, samples=1)
        for dev in drifting:
            dev.drifted = True
        store_windows(conn, devs, start + DRIFT_FROM * WINDOW_S, WINDOWS - DRIFT_FROM,
                      WINDOW_S, samples=1)
    fired = []
    for w in range(1, WINDOWS + 1):
        with transaction(engine) as conn:
            fired += trigger_step(conn, cfg, start + w * WINDOW_S + 1).fired
    assert len(fired) == 1, f"expected one trigger, got {fired}"
    return [d.device_id for d in devs], [d.device_id for d in drifting], fired[0]


def _url(sha, ttl, sent_at):
    return f"http://cloud/a/{sha}?expires={int(sent_at + ttl)}"


def _telemetry(conn, device, fleet, version, ts, confidence=0.82, classes=None) -> None:
    conn.execute(sa.insert(messages).values(
        device_id=device, fleet=fleet, kind="telemetry", seq=next(_seq), ts=ts, received_at=ts,
        model_name="tiny", model_version=version, window_s=10.0, inferences=40, errors=0,
        latency_p50=1.2 + (ts % 7) / 10, latency_p95=2.4 + (ts % 5) / 5,
        confidence_mean=confidence,
        payload={"model": {"name": "tiny", "version": version, "non_finite": 0},
                 "class_counts": classes or {"1": 14, "2": 13, "3": 13}}))


def _answer(conn, device, fleet, cmd_id, ts) -> None:
    for phase in ("probation", "committed"):
        conn.execute(sa.insert(messages).values(
            device_id=device, fleet=fleet, kind="cmd/result", seq=next(_seq), ts=ts,
            received_at=ts, payload={"cmd_id": cmd_id, "type": "update", "ok": True,
                                     "error": None, "detail": {"phase": phase}}))


class _Rollout:
    """Drives one rollout with the real state machine: steps, device answers, traffic."""

    def __init__(self, engine, fleet: str, ids: list[str], version: str, t0: float):
        self.engine, self.fleet, self.ids, self.version, self.t = engine, fleet, ids, version, t0
        policy = RolloutPolicy(canary_count=1, waves=[50, 100], bake_s=60, heartbeat_s=30,
                               thresholds={"min_inferences": 20})
        with transaction(engine) as conn:
            self.rid = create_rollout(conn, "tiny", version, fleet, None, policy, t0)
        self.on_new: set[str] = set()

    def step(self, dt: float = 1.0) -> str:
        self.t += dt
        with transaction(self.engine) as conn:
            rollout_step(conn, _url, self.t)
            doc = rollout_doc(conn, self.rid)
        self._install([d for d in doc["devices"] if d["state"] == "sent"])
        return doc["state"]

    def _install(self, sent: list[dict]) -> None:
        with transaction(self.engine) as conn:
            for d in sent:
                _answer(conn, d["device_id"], self.fleet, d["cmd_id"], self.t)
                self.on_new.add(d["device_id"])

    def traffic(self, seconds: int, confidence: float = 0.82, classes=None) -> None:
        with transaction(self.engine) as conn:
            for k in range(0, seconds, 5):
                for d in self.ids:
                    new = d in self.on_new
                    _telemetry(conn, d, self.fleet, self.version if new else "1", self.t + k,
                               confidence if new else 0.82, classes if new else None)
        self.t += seconds


def _promoted(engine, t0: float, now: float) -> int:
    ids = [f"lab-{i:02d}" for i in range(1, 5)]
    with transaction(engine) as conn:
        _register(conn, ids, "lab", "tiny", "1", ["online"] * 4, now)
        publish_model(conn, version="2", sha="ab" * 32)
    r = _Rollout(engine, "lab", ids, "2", t0)
    state = ""
    for _ in range(40):
        state = r.step()
        if state == "done":
            return r.rid
        if state == "baking":
            r.traffic(70)
    raise AssertionError(f"rollout {r.rid} ended {state}, not done")


def _halted(engine, t0: float, now: float) -> int:
    ids = [f"field-{i:02d}" for i in range(1, 5)]
    with transaction(engine) as conn:
        _register(conn, ids, "field", "tiny", "1", ["online", "online", "online", "stale"], now)
        publish_model(conn, version="3", sha="cd" * 32)
    r = _Rollout(engine, "field", ids, "3", t0)
    for _ in range(10):
        if r.step() == "baking":
            break
    r.traffic(70, confidence=0.11, classes={"0": 40})  # past the 60 s bake: soft checks
    state = r.step()
    assert state == "halted", f"rollout {r.rid} is {state}, expected halted"
    return r.rid


def fill_store(engine, cfg: CloudConfig, now: float) -> Filled:
    """Fill an empty, migrated store (see the module docstring)."""
    start = math.floor(now / WINDOW_S) * WINDOW_S - (WINDOWS + 1) * WINDOW_S
    sims, drifted, trigger_id = _drift_history(engine, cfg, start)
    promoted = _promoted(engine, now - 3 * 3600, now)
    halted = _halted(engine, now - 1200, now)
    return Filled(sims, drifted, trigger_id, promoted, halted)
