"""Fleet simulator: telemetry drawn from the reference (and drifted), real MQTT messages
that the protocol reads strictly, credentials files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cloud_sync.sim import SimSettings, read_credentials, run_fleet
from cloud_sync.sim.reference import Drift, draw_window, shares, synthetic_reference
from edge_agent import protocol
from edge_agent.errors import ConfigError
from tests.brokers import Mosquitto, Subscriber


def test_drift_moves_inputs_up_classes_to_one_and_confidence_down():
    ref = synthetic_reference()
    normal, drifted = shares(ref), shares(ref, Drift())
    bins = np.arange(normal.inputs.shape[1])
    assert (drifted.inputs @ bins > normal.inputs @ bins + 1).all()
    assert drifted.classes[0] > 0.5 > normal.classes[0]
    conf_bins = np.arange(len(normal.confidence))
    assert drifted.confidence @ conf_bins < normal.confidence @ conf_bins - 1
    per_channel, below, above, classes, conf = draw_window(np.random.default_rng(0), normal,
                                                           100, 64)
    assert sum(map(sum, per_channel)) + sum(below) + sum(above) == 3 * 100 * 64
    assert sum(classes.values()) == 100 and sum(conf) == 100


def test_simulated_devices_speak_the_protocol(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        sub = Subscriber(broker.port, topic="edgekit/#").start()
        report = run_fleet(SimSettings(broker=broker.url, fleet="f1", devices=6, interval_s=0.5,
                                       duration_s=1.6, drift_after_s=0.1, drift_fraction=0.5,
                                       sample_chance=1.0))
        got = sub.wait_for(lambda r: len(r) >= report.to_dict()["published_total"], 10)
        sub.stop()
    assert report.connected == 6 and report.drifted == 3 and report.refused == 0
    kinds = {}
    for topic, payload, _retain in got:
        fleet, device, kind = protocol.parse_topic(topic)
        msg = protocol.decode(kind, payload)  # strict read: what agents send
        assert fleet == "f1" and msg.device_id == device
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds == dict(report.published)
    assert report.published["status"] == 12  # online, then offline (stopped)


def test_credentials_from_device_add_json(tmp_path):
    one = {"device_id": "d1", "fleet": "f", "username": "d1", "password": "pw"}
    (tmp_path / "list.json").write_text(json.dumps([one, {**one, "device_id": "d2"}]))
    (tmp_path / "lines.json").write_text(json.dumps(one) + "\n" + json.dumps(one) + "\n")
    assert [c.device_id for c in read_credentials(tmp_path / "list.json")] == ["d1", "d2"]
    assert len(read_credentials(tmp_path / "lines.json")) == 2
    (tmp_path / "bad.json").write_text(json.dumps({"device_id": "d1"}))
    with pytest.raises(ConfigError, match="needs device_id, fleet, username and password"):
        read_credentials(tmp_path / "bad.json")


def test_bad_settings_are_one_clear_error():
    with pytest.raises(ConfigError, match="drift_fraction"):
        SimSettings(broker="mqtt://127.0.0.1:1", drift_fraction=2.0)
