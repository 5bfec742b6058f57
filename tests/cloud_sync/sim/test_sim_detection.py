"""``fleet sim`` with ``task="detection"`` (issue 19): simulated cameras send 1.3 telemetry
with ``detection`` blocks (drifted cameras another class mix) and samples with detections,
which the protocol reads strictly; a bad task is a one-line error."""

from __future__ import annotations

import pytest

from cloud_sync.sim import SimSettings, run_fleet
from edge_agent import protocol
from edge_agent.errors import ConfigError
from tests.brokers import Mosquitto, Subscriber


def test_simulated_cameras_send_detection_telemetry_and_samples(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        sub = Subscriber(broker.port, topic="edgekit/#").start()
        report = run_fleet(SimSettings(broker=broker.url, fleet="cams", devices=4,
                                       interval_s=0.4, duration_s=1.3, drift_after_s=0.0,
                                       drift_fraction=0.5, sample_chance=1.0, inferences=50,
                                       task="detection"))
        got = sub.wait_for(lambda r: len(r) >= report.to_dict()["published_total"], 10)
        sub.stop()
    telemetry = [protocol.decode(protocol.TELEMETRY, payload) for topic, payload, _ in got
                 if topic.endswith("/telemetry")]
    samples = [protocol.decode(protocol.SAMPLES, payload) for topic, payload, _ in got
               if topic.endswith("/samples")]
    assert telemetry and samples and report.drifted == 2
    for msg in telemetry:
        assert msg.detection.frames == 50 and msg.confidence is None and not msg.class_counts
        assert msg.input_hist is not None and msg.model.name == "sim-detector"
    assert all(s.prediction is None and s.detections is not None for s in samples)
    assert samples[0].input.shape == [1, 3, 64, 64]


def test_an_unknown_sim_task_is_a_one_line_error():
    with pytest.raises(ConfigError, match="fleet sim task 'segmentation' is not one of "
                                          "classification, detection"):
        SimSettings(broker="mqtt://127.0.0.1:1883", task="segmentation")


def test_fleet_sim_cli_runs_cameras_and_refuses_an_unknown_task(tmp_path, capsys):
    from tests.cli import run_main

    with Mosquitto(tmp_path / "broker") as broker:
        assert run_main("fleet", "sim", "--broker", broker.url, "--devices", "2",
                        "--interval", "0.3", "--duration", "0.8", "--task", "detection",
                        "--json") == 0
        assert '"connected": 2' in capsys.readouterr().out
        assert run_main("fleet", "sim", "--broker", broker.url, "--task", "segmentation") == 1
    err = capsys.readouterr().err.strip()
    assert "fleet sim task 'segmentation' is not one of" in err and "\n" not in err
