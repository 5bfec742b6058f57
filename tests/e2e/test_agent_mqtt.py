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

from tests.brokers import DYNSEC_PLUGIN, Mosquitto, Subscriber, free_port
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
    """``edgekit agent run`` as a child process, talking to ``broker``."""
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
        assert _docs(got, "status")[-1]["reason"] == "stopped"
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


def _wait(what, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step)
    return what()


@pytest.mark.slow
def test_after_reconnects_and_a_crash_the_retained_status_is_a_newer_offline(
        tmp_path, keypair, make_onnx_bundle):
    """Status order is seq: the will of each connection sorts after its "online"."""
    broker = Mosquitto(tmp_path / "broker", persistent=True).start()
    sub = Subscriber(broker.port, f"{PREFIX}/status", client_id="watch", persistent=True).start()
    http_port = free_port()
    agent = _start_agent(broker, make_onnx_bundle("1"), keypair[1], tmp_path / "s", http_port)
    try:
        _wait_http(http_port, agent)
        def online_count() -> int:
            return len([d for d in _docs(sub.received(), "status") if d["state"] == "online"])

        for restart in range(3):  # each broker restart: the agent reconnects and says online
            assert _wait(lambda n=restart: online_count() > n, 30), (restart, sub.received())
            broker.stop()
            broker.start()
        assert _wait(lambda: online_count() >= 4, 30), sub.received()
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        onlines = [d for d in _docs(sub.received(), "status") if d["state"] == "online"]
        assert len(onlines) >= 4
        fresh = Subscriber(broker.port, f"{PREFIX}/status", client_id="late").start()
        try:
            got = fresh.wait_for(lambda g: any(d["state"] == "offline" for d in _docs(g, "status")),
                                 30)
            retained = _docs(got, "status")[-1]
        finally:
            fresh.stop()
        assert retained["state"] == "offline" and retained["reason"] == "connection_lost"
        assert retained["seq"] > max(d["seq"] for d in onlines)
    finally:
        if agent.poll() is None:
            agent.kill()
        sub.stop()
        broker.stop()


def _journal(state: Path) -> dict[str, str]:
    import sqlite3

    path = state / "outbox.sqlite"
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return dict(db.execute("SELECT cmd_id, state FROM commands").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


@pytest.mark.slow
def test_a_command_killed_between_receipt_and_handling_is_handled_after_restart(
        tmp_path, keypair, make_onnx_bundle):
    """Journaled before the PUBACK: SIGKILL before it runs, and it runs at the next start."""
    from tests.edge_agent.agent_helpers import command_with

    broker = Mosquitto(tmp_path / "broker").start()
    sub = Subscriber(broker.port, f"{PREFIX}/cmd/result").start()
    www = tmp_path / "www"
    www.mkdir()
    v2 = make_onnx_bundle("2", seed=1)
    (www / "v2.ekb").write_bytes(v2.read_bytes())
    files = FileServer(www, bytes_per_s=300)  # the update's download keeps the worker busy
    state, bundle = tmp_path / "s", make_onnx_bundle("1")
    agent = _start_agent(broker, bundle, keypair[1], state, free_port())
    try:
        assert _wait(lambda: len(_docs(sub.received(), "cmd/result")) == 0 and
                     (state / "outbox.sqlite").exists(), 30)
        time.sleep(1.0)  # connected and subscribed
        update = json.loads(update_cmd(files.url("v2.ekb"), v2, "2"))
        _publish(broker.port, f"{PREFIX}/cmd", json.dumps(update).encode())
        _publish(broker.port, f"{PREFIX}/cmd", command_with("ping", cmd_id="after-update"))
        assert _wait(lambda: _journal(state).get("after-update") == "pending", 30), \
            _journal(state)
        assert not _docs(sub.received(), "cmd/result")  # nothing handled yet
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        files.bytes_per_s = None
        agent = _start_agent(broker, bundle, keypair[1], state, free_port())
        got = sub.wait_for(lambda g: {"after-update", update["cmd_id"]} <=
                           {d["cmd_id"] for d in _docs(g, "cmd/result")}, 60)
        by_id: dict[str, list[dict]] = {}
        for doc in _docs(got, "cmd/result"):
            by_id.setdefault(doc["cmd_id"], []).append(doc)
        assert [d["ok"] for d in by_id["after-update"]] == [True], by_id
        assert by_id[update["cmd_id"]][0]["detail"]["phase"] == "probation", by_id
    finally:
        if agent.poll() is None:
            agent.kill()
        files.close()
        sub.stop()
        broker.stop()


@pytest.mark.slow
@pytest.mark.skipif(not Path(DYNSEC_PLUGIN).exists(), reason="mosquitto's dynamic security plugin "
                    "(which refuses subscriptions in SUBACK) is not installed")
def test_a_refused_cmd_subscription_makes_the_agent_report_degraded(tmp_path, keypair,
                                                                     make_onnx_bundle):
    """mosquitto's acl_file grants every SUBACK; its dynamic-security plugin refuses them."""
    acl = {"defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True,
                                "subscribe": False, "unsubscribe": True},
           "clients": [], "groups": [{"groupname": "anon", "roles": [{"rolename": "dev"}]}],
           "roles": [{"rolename": "dev", "acls": [
               {"acltype": "publishClientSend", "topic": f"{PREFIX}/#", "allow": True},
               {"acltype": "subscribePattern", "topic": f"{PREFIX}/status", "allow": True}]}],
           "anonymousGroup": "anon"}
    (tmp_path / "dynsec.json").write_text(json.dumps(acl))
    broker = Mosquitto(tmp_path / "broker", extra_conf=(
        f"plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {tmp_path / 'dynsec.json'}")).start()
    sub = Subscriber(broker.port, f"{PREFIX}/status").start()
    http_port = free_port()
    agent = _start_agent(broker, make_onnx_bundle("1"), keypair[1], tmp_path / "s", http_port)
    try:
        got = sub.wait_for(lambda g: any(d["state"] == "degraded" for d in _docs(g, "status")), 30)
        degraded = [d for d in _docs(got, "status") if d["state"] == "degraded"]
        assert degraded, _docs(got, "status")
        assert "refused the subscription" in degraded[-1]["reason"]
        assert f"{PREFIX}/cmd" in degraded[-1]["reason"]
    finally:
        if agent.poll() is None:
            agent.kill()
        sub.stop()
        broker.stop()
