"""``edgekit agent run`` as a user runs it: a real Mosquitto, MQTT commands, HTTP, OTA update."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import Mosquitto, Subscriber, free_port
from tests.edge_agent.agent_helpers import command, update_cmd
from tests.httpserve import FileServer

ROOT = Path(__file__).resolve().parents[2]
FLEET, DEVICE = "lab", "pi-7"
PREFIX = f"edgekit/{FLEET}/{DEVICE}"


def _docs(got, kind: str) -> list[dict]:
    out = []
    for topic, payload, _retain in got:
        if topic == f"{PREFIX}/{kind}":
            with contextlib.suppress(ValueError):
                out.append(json.loads(payload))
    return out


def _publish(port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


def _predict(http_port: int, x: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    np.save(buf, x)
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/predict", buf.getvalue(),
                                 {"Content-Type": "application/x-npy",
                                  "Accept": "application/x-npy"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return np.load(io.BytesIO(resp.read()), allow_pickle=False)


def _start_agent(broker: Mosquitto, bundle: Path, pubkey: Path, state: Path,
                 http_port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "edgekit.cli.main", "agent", "run", "--bundle", str(bundle),
           "--device-id", DEVICE, "--fleet", FLEET, "--broker", broker.url, "--pubkey",
           str(pubkey), "--state-dir", str(state), "--http", f"127.0.0.1:{http_port}",
           "--telemetry-interval", "0.5"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_http(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("agent HTTP API did not come up")


@pytest.mark.slow
def test_agent_run_over_mqtt_serves_reports_obeys_and_updates(tmp_path, keypair,
                                                              make_onnx_bundle, rng):
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Subscriber(broker.port, f"{PREFIX}/#").start()
    www = tmp_path / "www"
    www.mkdir()
    files = FileServer(www)
    http_port = free_port()
    agent = _start_agent(broker, make_onnx_bundle("1"), keypair[1], tmp_path / "state",
                         http_port)
    try:
        _wait_http(http_port, agent)
        got = sub.wait_for(lambda g: any(d["state"] == "online" for d in _docs(g, "status")), 15)
        assert any(d["state"] == "online" for d in _docs(got, "status"))
        for _ in range(5):
            assert _predict(http_port, rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
                            ).shape == (1, 10)
        got = sub.wait_for(lambda g: sum(d["inferences"] for d in _docs(g, "telemetry")) >= 5, 15)
        telemetry = _docs(got, "telemetry")
        assert sum(d["inferences"] for d in telemetry) == 5
        seqs = [d["seq"] for d in telemetry]
        assert seqs == sorted(set(seqs))

        _publish(broker.port, f"{PREFIX}/cmd", command("ping"))
        got = sub.wait_for(lambda g: any(d["type"] == "ping" for d in _docs(g, "cmd/result")), 15)
        assert [d["ok"] for d in _docs(got, "cmd/result") if d["type"] == "ping"] == [True]

        v2 = make_onnx_bundle("2", seed=1)
        (www / "v2.ekb").write_bytes(v2.read_bytes())
        _publish(broker.port, f"{PREFIX}/cmd", update_cmd(files.url("v2.ekb"), v2, "2"))
        got = sub.wait_for(lambda g: any(d["detail"].get("phase") == "probation"
                                         for d in _docs(g, "cmd/result")), 30)
        assert any(d["detail"].get("phase") == "probation" for d in _docs(got, "cmd/result")), \
            _docs(got, "cmd/result")
        for _ in range(210):  # the default probation: 200 inferences
            _predict(http_port, rng.standard_normal((1, 1, 8, 8)).astype(np.float32))
        got = sub.wait_for(lambda g: any(d["detail"].get("phase") == "committed"
                                         for d in _docs(g, "cmd/result")), 30)
        assert any(d["detail"].get("phase") == "committed" for d in _docs(got, "cmd/result"))
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=5) as r:
            assert json.loads(r.read())["model"]["version"] == "2"

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        got = sub.wait_for(lambda g: _docs(g, "status")[-1]["state"] == "offline", 10)
        assert _docs(got, "status")[-1]["detail"] == {"reason": "stopped"}
    finally:
        if agent.poll() is None:
            agent.kill()
        files.close()
        sub.stop()
        broker.stop()


@pytest.mark.slow
def test_killed_agent_leaves_an_offline_will(tmp_path, keypair, make_onnx_bundle):
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Subscriber(broker.port, f"{PREFIX}/status").start()
    http_port = free_port()
    agent = _start_agent(broker, make_onnx_bundle("1"), keypair[1], tmp_path / "s", http_port)
    try:
        _wait_http(http_port, agent)
        sub.wait_for(lambda g: any(d["state"] == "online" for d in _docs(g, "status")), 15)
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        got = sub.wait_for(lambda g: _docs(g, "status")[-1]["state"] == "offline", 30)
        last = _docs(got, "status")[-1]
        assert last["state"] == "offline" and last["device_id"] == DEVICE
    finally:
        if agent.poll() is None:
            agent.kill()
        sub.stop()
        broker.stop()
