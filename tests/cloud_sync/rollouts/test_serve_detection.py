"""A detector rollout through a real ``cloud serve`` and a real broker (issue 19), on SQLite
and PostgreSQL: four cameras speak the protocol with its own classes (status, 1.3
telemetry with ``detection`` blocks, answers to update and rollback commands, as agents
do); the new version's canary finds nothing, or finds boxes everywhere. ``edgekit rollout
start`` starts it over the API; serve's ingest stores the telemetry, its controller halts
the rollout on detector health and rolls the canary back over MQTT; the other cameras
never get the update."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from cloud_sync.sim.detection import DetectorWorld, detection_window
from cloud_sync.store import open_store, transaction
from edge_agent import protocol as p
from edge_agent.contracts import ModelRef, ModelState
from edgekit.local_broker import free_port
from tests.brokers import Mosquitto
from tests.cli import run_main
from tests.cloud_sync.rollouts.fleet import wait_for
from tests.cloud_sync.rollouts.test_detection_health import publish_detector

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "detector-rollout-token-0123456789"
CAMERAS = ["cam-a", "cam-b", "cam-c", "cam-d"]
WORLD = DetectorWorld()


class Camera:
    """One simulated camera on detector ``det``: telemetry every 0.3 s, normal on version 1,
    in ``new_mode`` on any other; cmd/results as the agent sends them."""

    def __init__(self, device: str, port: int, new_mode: str, seed: int) -> None:
        self.device, self.version, self.new_mode = device, "1", new_mode
        self.seqs: dict[str, int] = {}
        self.rng = np.random.default_rng(seed)
        self.commands: list[str] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device,
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_command
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(p.topic("cams", device, p.CMD), qos=1)
        self.client.loop_start()
        self.send(p.STATUS, self._status())

    def _seq(self, kind: str) -> int:
        self.seqs[kind] = self.seqs.get(kind, 0) + 1
        return self.seqs[kind]

    def _status(self) -> p.Status:
        return p.Status(device_id=self.device, seq=self._seq(p.STATUS), ts=time.time(),
                        state="online", model=ModelRef(name="det", version=self.version),
                        agent_version="sim", profile="x86-64", incarnation="cam")

    def send(self, kind: str, msg) -> None:
        self.client.publish(p.topic("cams", self.device, kind), msg.to_json(), qos=1)

    def tick(self) -> None:
        with self.lock:
            mode = "normal" if self.version == "1" else self.new_mode
            self.send(p.TELEMETRY, p.Telemetry(
                device_id=self.device, seq=self._seq(p.TELEMETRY), ts=time.time(),
                window_s=0.3, model=ModelState(name="det", version=self.version),
                inferences=30, errors=0, latency_ms={"p50": 3.0, "p95": 4.0},
                detection=detection_window(self.rng, WORLD, 30, mode), incarnation="cam"))

    def _answer(self, cmd: p.Command, phase: str | None) -> None:
        self.send(p.CMD_RESULT, p.CommandResult(
            device_id=self.device, seq=self._seq(p.CMD_RESULT), ts=time.time(),
            cmd_id=cmd.cmd_id, type=cmd.type, ok=True, incarnation="cam",
            detail={"phase": phase} if phase else {}))

    def _on_command(self, client, userdata, message) -> None:
        cmd = p.decode(p.CMD, message.payload)
        with self.lock:
            self.commands.append(cmd.type)
            if cmd.type == "update":
                self.version = cmd.args["version"]
                self._answer(cmd, "probation")
                self._answer(cmd, "committed")
            elif cmd.type == "rollback":
                self.version = "1"
                self._answer(cmd, None)
            self.send(p.STATUS, self._status())

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(params=["none", "everywhere"])
def site(request, tmp_path, db_url, capsys, keypair):
    engine = open_store(db_url)
    with transaction(engine) as conn:
        publish_detector(conn, "1", "cd" * 32)
        publish_detector(conn, "2", "ab" * 32)
    api = f"127.0.0.1:{free_port()}"
    (tmp_path / "cloud.json").write_text(json.dumps({"rollouts": {"interval_s": 0.5}}))
    with Mosquitto(tmp_path / "mosq", max_inflight=1000) as broker:
        log = (tmp_path / "serve.log").open("ab")
        serve = subprocess.Popen(
            [sys.executable, "-m", "edgekit.cli.main", "cloud", "serve", "--db", db_url,
             "--broker", broker.url, "--pubkey", str(keypair[1]), "--workers", "1", "--config",
             str(tmp_path / "cloud.json"), "--http", api],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), EDGEKIT_API_TOKEN=TOKEN),
            stdout=subprocess.DEVNULL, stderr=log)
        cameras = [Camera(d, broker.port, request.param, i) for i, d in enumerate(CAMERAS)]
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                for cam in cameras:
                    cam.tick()
                time.sleep(0.3)

        threading.Thread(target=traffic, daemon=True).start()
        try:
            yield f"http://{api}", engine, cameras, capsys, request.param
        finally:
            stop.set()
            for cam in cameras:
                cam.stop()
            serve.terminate()
            serve.wait(30)
            log.close()
            engine.dispose()
            print((tmp_path / "serve.log").read_text()[-3000:])


def _cli(capsys, api: str, *args: str) -> dict:
    """``edgekit ARGS --json`` against the running API."""
    code = run_main(*args, "--api", api, "--token", TOKEN, "--json")
    out = capsys.readouterr()
    assert code == 0, out.err + out.out
    return json.loads(out.out)


def _stored(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(DISTINCT device_id) FROM messages WHERE "
                                    "kind = 'telemetry' AND frames = 30")).scalar() or 0


def _profiled(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM devices WHERE profile = 'x86-64'")
                            ).scalar() or 0


@pytest.mark.slow
def test_a_blind_or_trigger_happy_detector_is_halted_and_rolled_back_through_serve(site):
    api, engine, cameras, capsys, mode = site
    wait_for(lambda: _stored(engine) == len(CAMERAS), 60, "detection telemetry from every camera")
    for cam in cameras:  # their first status may have gone out before serve subscribed
        with cam.lock:
            cam.send(p.STATUS, cam._status())
    wait_for(lambda: _profiled(engine) == len(CAMERAS), 30, "every camera's profile")
    started = _cli(capsys, api, "rollout", "start", "--model", "det", "--version", "2", "--fleet",
                   "cams", "--canary", "1", "--bake", "3", "--waves", "50,100")
    rid = str(started["id"])

    def finished():
        doc = _cli(capsys, api, "rollout", "status", rid)
        return doc if doc["state"] == "rolled_back" else None

    doc = wait_for(finished, 90, f"rollout {rid} to be rolled back",
                   lambda: _cli(capsys, api, "rollout", "status", rid)["timeline"])
    halt = next(e for e in doc["timeline"] if e["state"] == "halted")
    assert "detections per frame, ratio to control " + ("0 < 0.333" if mode == "none" else "") \
        in halt["message"]
    if mode == "everywhere":
        assert halt["figures"]["detections_per_frame_ratio"] > 3 and "> 3" in halt["message"]
    assert doc["verdict"]["figures"]["task"] == "detection"
    canary = [c for c in cameras if c.commands]
    assert len(canary) == 1 and canary[0].commands == ["update", "rollback"]
    assert canary[0].version == "1"
    states = sorted(d["state"] for d in doc["devices"])
    assert states == ["rollback_confirmed", "skipped", "skipped", "skipped"]
