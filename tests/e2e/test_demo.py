"""`make demo` end to end: train, build, agent over MQTT, OTA update, tampered update refused."""

from __future__ import annotations

import pytest

from edgekit.cli.output import console
from edgekit.demo import DemoSettings, run_demo
from tests.brokers import Mosquitto


@pytest.mark.slow
def test_demo_runs_the_whole_loop(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        width = console.width
        console.width = 400  # whole lines: the asserts below must not meet a line wrap
        with console.capture() as captured:
            run_demo(DemoSettings(workdir=tmp_path / "demo", broker=broker.url, epochs=6))
    finally:
        console.width = width
        broker.stop()
    text = captured.get()
    assert "classified 449 validation digits over HTTP" in text
    assert "telemetry seq" in text
    assert "after probation: ok, phase committed (version 2); serving digits v2" in text
    assert "refused: downloaded bundle sha256" in text
    assert "{'" not in text  # people read this: no Python dicts
    assert (tmp_path / "demo" / "build" / "report.json").is_file()
