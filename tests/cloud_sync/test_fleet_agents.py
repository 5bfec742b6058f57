"""Real agents against a real cloud: credentials and ACLs from the CLI, ``cloud serve``,
registration, telemetry, ``cloud publish`` and an update downloaded from the artifact
endpoint with a signed URL — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_sync.artifacts import load_url_secret, sign_artifact_url
from edge_agent.bundle.archive import file_digest
from edgekit.local_broker import free_port
from tests.brokers import Mosquitto
from tests.cli import run_main
from tests.cloud_sync.rollouts.fleet import rows as _rows
from tests.cloud_sync.rollouts.fleet import wait_for as _wait

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fleet-test-token-0123456789"
DEVICES = ("pi-a", "pi-b")


def _cli_json(capsys, *args: str) -> dict:
    assert run_main(*args) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _agent(device: str, password: str, broker: Mosquitto, bundle: Path, pubkey: Path,
           state: Path, http_port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edgekit.cli.main", "agent", "run", "--bundle", str(bundle),
           "--device-id", device, "--fleet", "lab", "--broker", broker.url, "--username", device,
           "--pubkey", str(pubkey), "--state-dir", str(state), "--telemetry-interval", "0.5",
           "--http", f"127.0.0.1:{http_port}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), EDGEKIT_MQTT_PASSWORD=password)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _predict(port: int) -> None:
    body = json.dumps({"input": [[[0.5] * 8] * 8]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", body,
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def _send_command(port: int, password: str, device: str, doc: dict) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("edgekit-cloud", password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(f"edgekit/lab/{device}/cmd", json.dumps(doc), qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


@pytest.mark.slow
def test_real_agents_register_report_and_update_from_a_published_bundle(
        tmp_path, db_url, engine, keypair, make_onnx_bundle, capsys, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("EDGEKIT_CLOUD_DIR", str(data))
    passwords = {d: _cli_json(capsys, "cloud", "device", "add", d, "--fleet", "lab", "--db",
                              db_url, "--json")["password"] for d in DEVICES}
    assert run_main("cloud", "broker-config", "--out", str(tmp_path / "broker-files"),
                    "--db", db_url) == 0
    service_password = (data / "mqtt-service.password").read_text().strip()
    conf = [line for line in (tmp_path / "broker-files" / "mosquitto.conf").read_text()
            .splitlines() if not line.startswith("listener")]
    api_port = free_port()
    procs: list[subprocess.Popen] = []
    with Mosquitto(tmp_path / "mosq", anonymous=False, max_inflight=1000,
                   extra_conf="\n".join(conf)) as broker:
        try:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "edgekit.cli.main", "cloud", "serve", "--db", db_url,
                 "--broker", broker.url, "--pubkey", str(keypair[1]), "--workers", "1",
                 "--http", f"127.0.0.1:{api_port}"], cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT), EDGEKIT_API_TOKEN=TOKEN)))
            http_ports = {d: free_port() for d in DEVICES}
            for device in DEVICES:
                procs.append(_agent(device, passwords[device], broker, make_onnx_bundle("1"),
                                    keypair[1], tmp_path / device, http_ports[device]))
            _wait(lambda: len(_rows(engine, "SELECT id FROM devices WHERE state = 'online' "
                                    "AND model_version = '1' AND profile = 'x86-64'")) == 2,
                  60, "both agents registered online with v1",
                  lambda: _rows(engine, "SELECT * FROM devices"))
            for device in DEVICES:
                _wait(lambda d=device: _try(_predict, http_ports[d]), 30, f"{device}'s HTTP API")
                for _ in range(5):
                    _predict(http_ports[device])
            _wait(lambda: len(_rows(engine, "SELECT DISTINCT device_id FROM messages WHERE "
                                    "kind = 'telemetry' AND inferences > 0")) == 2,
                  30, "telemetry with inferences from both agents")

            v2 = make_onnx_bundle("2", seed=1)
            assert run_main("cloud", "publish", str(v2), "--api",
                            f"http://127.0.0.1:{api_port}", "--token", TOKEN) == 0
            sha, size = file_digest(v2)
            url = sign_artifact_url(f"http://127.0.0.1:{api_port}", sha, 300,
                                    load_url_secret(data))
            cmd_id = uuid.uuid4().hex[:12]
            _send_command(broker.port, service_password, "pi-a", {
                "v": "1.1", "cmd_id": cmd_id, "type": "update", "ts": time.time(),
                "expires_at": time.time() + 300,
                "args": {"url": url, "sha256": sha, "version": "2", "size": size}})
            _wait(lambda: _rows(engine, "SELECT id FROM devices WHERE id = 'pi-a' AND "
                                "model_version = '2'"), 60, "pi-a reporting v2")
            results = [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in _rows(
                engine, "SELECT payload FROM messages WHERE kind = 'cmd/result' AND "
                "device_id = 'pi-a'")]
            assert any(r["cmd_id"] == cmd_id and r["ok"] and r["detail"]["phase"] ==
                       "probation" for r in results), results
            assert _rows(engine, "SELECT model_version FROM devices WHERE id = 'pi-b'")[0][0] \
                == "1"
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _try(fn, *args) -> bool:
    try:
        fn(*args)
    except OSError:
        return False
    return True
