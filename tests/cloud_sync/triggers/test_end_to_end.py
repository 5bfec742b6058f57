"""Broker -> ingest -> controller -> trigger -> actions: a simulated fleet with drift on
half its devices, through a private Mosquitto and a real ingest worker; the trigger names
those devices, its command action loads the samples export, the default MQTT event is
published on ``edgekit/<fleet>/_events/trigger``."""

from __future__ import annotations

import json
import sys
import time

import pytest

from cloud_sync.actions.worker import run_due_actions
from cloud_sync.sim import SimSettings, run_fleet
from cloud_sync.store import transaction
from cloud_sync.triggers.controller import controller_step
from cloud_sync.triggers.queries import get_trigger
from tests.brokers import Subscriber
from tests.cloud_sync.ingest.conftest import count, wait_until
from tests.cloud_sync.triggers.helpers import publish_reference

WINDOW_S = 1.0


@pytest.mark.slow
def test_fleet_sim_drift_fires_one_trigger_whose_actions_run(engine, make_cfg, thread_worker,
                                                             mqtt_broker, tmp_path):
    out = tmp_path / "seen.json"
    script = ("import json, os, numpy as np\n"
              "z = np.load(os.environ['EDGEKIT_SAMPLES'])\n"
              f"json.dump({{'n': int(z['inputs'].shape[0]), 'devices': sorted(set(z['device']))}},"
              f" open({str(out)!r}, 'w'))\n")
    policy = {"window_s": WINDOW_S, "k": 2, "n": 3, "min_devices": 2,
              "actions": [{"kind": "mqtt"},
                          {"kind": "command", "command": [sys.executable, "-c", script]}]}
    cfg = make_cfg(triggers={"default": policy})
    with transaction(engine) as conn:
        publish_reference(conn)
    thread_worker(cfg)
    events = Subscriber(mqtt_broker.port, topic="edgekit/+/_events/#",
                        client_id="test-events").start()
    report = run_fleet(SimSettings(broker=mqtt_broker.url, fleet="f1", devices=8,
                                   interval_s=0.25, duration_s=4.2, drift_after_s=0.0,
                                   drift_fraction=0.5, sample_chance=0.5, device_prefix="sim-"))
    assert report.drifted == 4
    published = report.to_dict()["published"]
    wait_until(lambda: count(engine, "SELECT count(*) FROM messages WHERE kind = 'telemetry'")
               >= published["telemetry"], 30, "telemetry stored")
    last = count(engine, "SELECT max(ts) FROM messages WHERE kind = 'telemetry'")
    now = min(time.time(), last + 0.01)  # a slow ingest must not push the windows past the run
    with transaction(engine) as conn:
        fired = controller_step(conn, cfg, now).fired
        assert controller_step(conn, cfg, now + 0.5).fired == []
    assert len(fired) == 1
    run_due_actions(engine, cfg)
    with engine.connect() as conn:
        trigger = get_trigger(conn, fired[0])
    assert set(trigger["devices_affected"]) == {f"sim-{i:05d}" for i in range(4)}
    assert trigger["evidence"]["top_channels"]
    assert [a["state"] for a in trigger["actions"]] == ["done", "done"]
    seen = json.loads(out.read_text())
    assert seen["n"] == trigger["samples_count"] > 0 and seen["devices"]
    got = events.wait_for(lambda r: len(r) >= 1, 10)
    events.stop()
    topic, payload, _retain = got[0]
    assert topic == "edgekit/f1/_events/trigger" and json.loads(payload)["id"] == fired[0]
