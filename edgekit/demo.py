"""The end-to-end demo: train -> build (prune, distill, quantize, export, prove) -> bundle ->
agent over MQTT (serve, telemetry, commands) -> over-the-air update with probation ->
a tampered update refused. The cloud side (ingest, drift, retraining, rollouts) is
still to come and the demo says so.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.cli.output import console
from edgekit.local_broker import choose_broker, free_port, host_port

FLEET, DEVICE = "demo", "device-1"


@dataclass
class DemoSettings:
    """What the demo runs on: where it writes, which model and profiles, which broker."""

    workdir: Path = Path("demo-out")
    arch: str = "small_cnn"
    profiles: list[str] = field(default_factory=lambda: ["x86-64", "rpi4"])
    serve_profile: str = "x86-64"
    broker: str | None = None
    epochs: int | None = None


def step(n: int, text: str) -> None:
    console.print(f"\n[bold cyan]{n}.[/] {text}", highlight=False)


def project_root() -> Path:
    """The clone the demo runs from: its ``examples/`` folder is not an installed package."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "examples" / "digits" / "models.py").is_file():
        from edge_agent.errors import EdgekitError

        raise EdgekitError("the demo needs the examples/ folder: run it from a clone of "
                           "edgekit (make demo)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def train_and_build(s: DemoSettings, key: Path) -> dict[str, Any]:
    """Train the baseline and run ``edgekit build`` for every demo profile."""
    root = project_root()
    from edgekit.cli.build import summary_table
    from examples.digits.train import train_baseline
    from export.build import BuildRequest, run_build

    weights, accuracy = train_baseline(s.arch, s.workdir / f"{s.arch}.pt", s.epochs)
    console.print(f"   baseline {s.arch}: validation accuracy {accuracy:.4f} -> {weights}")
    step(3, f"edgekit build for {', '.join(s.profiles)}: prune, distill, quantize, export, "
            "measure every candidate in its real runtime, keep the fastest within 1 point")
    result = run_build(BuildRequest(
        model=f"{root}/examples/digits/models.py:{s.arch}",
        data=f"{root}/examples/digits/data.py:data",
        profiles=s.profiles, key_file=key, out_dir=s.workdir / "build", weights=weights,
        tolerance="0.01", name="digits", version="1"))
    console.print(summary_table(result.report))
    console.print(f"   report: {result.report_html}", highlight=False)
    return {"bundles": result.bundles, "report": result.report}


class Watcher:
    """An MQTT subscriber on this device's topics (stands in for the cloud side)."""

    def __init__(self, broker_url: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        host, port = host_port(broker_url)
        self.client.connect(host, port)
        self.client.subscribe(f"edgekit/{FLEET}/{DEVICE}/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        try:
            doc = json.loads(message.payload)
        except ValueError:
            return
        with self.lock:
            self.messages.append((message.topic.split("/", 3)[3], doc))

    def of(self, kind: str) -> list[dict]:
        with self.lock:
            return [doc for k, doc in self.messages if k == kind]

    def wait(self, kind: str, done, timeout: float = 60.0) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for doc in reversed(self.of(kind)):
                if done(doc):
                    return doc
            time.sleep(0.1)
        return None

    def send(self, kind: str, payload: bytes) -> None:
        self.client.publish(f"edgekit/{FLEET}/{DEVICE}/{kind}", payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def predict_http(port: int, x: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    np.save(buf, x.astype(np.float32))
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", buf.getvalue(),
                                 {"Content-Type": "application/x-npy",
                                  "Accept": "application/x-npy"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return np.load(io.BytesIO(resp.read()), allow_pickle=False)


def serve_on_device(s: DemoSettings, bundle: Path, pub: Path, broker: str) -> dict[str, Any]:
    """Start the agent on the bundle, classify the validation digits over HTTP, watch MQTT."""
    from edge_agent.agent import Agent
    from edge_agent.config import AgentConfig
    from examples.digits.data import splits

    http_port = free_port()
    state = s.workdir / "device-state"
    shutil.rmtree(state, ignore_errors=True)  # each demo run flashes a fresh device
    cfg = AgentConfig.from_dict({
        "device_id": DEVICE, "fleet": FLEET, "state_dir": str(state),
        "pubkeys": [str(pub)], "bundle": str(bundle), "broker": broker,
        "http": f"127.0.0.1:{http_port}", "telemetry_interval_s": 1.0,
        "update": {"probation_inferences": 100, "probation_seconds": 60.0}})
    watcher = Watcher(broker)
    agent = Agent(cfg)
    agent.start()
    x_val, y_val = (t.numpy() for t in splits()["validation"])
    pairs = zip(x_val, y_val, strict=True)
    correct = sum(int(predict_http(http_port, x[None]).argmax() == y) for x, y in pairs)
    console.print(f"   agent serves {_model(agent)} on {broker}; classified "
                  f"{len(y_val)} validation digits over HTTP: accuracy "
                  f"{correct / len(y_val):.4f}", highlight=False)
    tele = watcher.wait("telemetry", lambda d: d["inferences"] > 0, 15)
    if tele:
        classes = ", ".join(f"{c}: {n}" for c, n in sorted(tele["class_counts"].items()))
        box = tele["outbox"]
        console.print(f"   telemetry seq {tele['seq']}: {tele['inferences']} inferences, "
                      f"p50 {tele['latency_ms']['p50']} ms; predicted classes {classes}; "
                      f"outbox {box['queued']} queued, {box['dropped']} dropped", highlight=False)
    return {"agent": agent, "watcher": watcher, "http_port": http_port, "x": x_val}


def _model(agent: Any) -> str:
    """'digits v2': what an agent serves, for people to read."""
    info = agent.model_info()
    return f"{info['name']} v{info['version']}"


def _result(doc: dict[str, Any] | None) -> str:
    """A cmd/result for people: 'ok, phase committed (version 2)' or 'refused: why'."""
    if doc is None:
        return "no answer in time"
    if not doc["ok"]:
        return f"refused: {doc['error']}"
    detail = doc["detail"]
    version = f" (version {detail['version']})" if "version" in detail else ""
    return f"ok, phase {detail.get('phase', '-')}{version}"


def release_v2(bundle: Path, key: Path, pub: Path, out: Path) -> Path:
    """Re-release the served model as version 2 (same weights, new signature and lineage)."""
    from edge_agent.bundle import load_private_key, open_bundle, trusted_keys, write_bundle
    from edge_agent.bundle.manifest import ModelInfo

    with open_bundle(bundle, trusted_keys([pub])) as opened:
        m = opened.manifest
        m.model = ModelInfo(name=m.model.name, version="2")
        m.lineage.parent_version = "1"
        payloads = {role: opened.path(role) for role in m.files}
        write_bundle(m, payloads, load_private_key(key), out)
    return out


class QuietFiles(SimpleHTTPRequestHandler):
    """Serves the release folder (a stand-in for the cloud's artifact server), no access log."""

    def log_message(self, *args: Any) -> None:
        pass


def over_the_air(s: DemoSettings, live: dict[str, Any], v2: Path) -> None:
    """Serve v2 over HTTP, command the update over MQTT, drive probation, then a bad update."""
    from edge_agent.bundle.archive import file_digest

    www = v2.parent
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietFiles, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{v2.name}"
    watcher, agent = live["watcher"], live["agent"]
    sha, _size = file_digest(v2)
    watcher.send("cmd", json.dumps({"v": 1, "cmd_id": "update-2", "type": "update",
                                    "ts": time.time(), "args": {"url": url, "sha256": sha,
                                                                "version": "2"}}).encode())
    first = watcher.wait("cmd/result", lambda d: d["cmd_id"] == "update-2", 60)
    console.print(f"   cmd/result: {_result(first)}", highlight=False)
    for x in live["x"][:120]:
        predict_http(live["http_port"], x[None])
    final = watcher.wait("cmd/result", lambda d: d["cmd_id"] == "update-2" and
                         d["detail"].get("final"), 60)
    console.print(f"   after probation: {_result(final)}; serving {_model(agent)}",
                  highlight=False)
    step(6, "a tampered update (sha256 does not match): refused, the model keeps serving")
    watcher.send("cmd", json.dumps({"v": 1, "cmd_id": "update-3", "type": "update",
                                    "ts": time.time(), "args": {"url": url, "sha256": "0" * 64,
                                                                "version": "3"}}).encode())
    bad = watcher.wait("cmd/result", lambda d: d["cmd_id"] == "update-3", 60)
    console.print(f"   cmd/result: {_result(bad)}; serving {_model(agent)}", highlight=False)
    server.shutdown()


def run_demo(s: DemoSettings) -> None:
    """Run the whole loop that exists today, printing what each step did."""
    from edge_agent.bundle import generate_keypair

    s.workdir.mkdir(parents=True, exist_ok=True)
    console.rule("edgekit demo")
    step(1, "signing keys")
    keys = s.workdir / "keys"
    key, pub = keys / "edgekit_ed25519.pem", keys / "edgekit_ed25519.pub.pem"
    if not key.exists():
        key, pub = generate_keypair(keys)
    console.print(f"   {key} (private), {pub} (public, given to devices)", highlight=False)
    step(2, f"train a {s.arch} baseline on scikit-learn's digits (upsampled to 32x32)")
    built = train_and_build(s, key)
    broker, private = choose_broker(s.broker, s.workdir / "broker")
    step(4, f"run the agent on the {s.serve_profile} bundle, broker {broker}")
    live = serve_on_device(s, built["bundles"][s.serve_profile], pub, broker)
    try:
        step(5, "over-the-air update to v2: download, verify, golden check, switch, probation")
        v2 = release_v2(built["bundles"][s.serve_profile], key, pub,
                        s.workdir / "www" / "digits-2.ekb")
        over_the_air(s, live, v2)
    finally:
        live["agent"].stop()
        live["watcher"].close()
        if private is not None:
            private.stop()
    console.print("\n[yellow]not yet in this demo:[/] the cloud side (telemetry ingest, drift "
                  "detection, retraining triggers, canary rollouts) — the MQTT messages above are "
                  "what it will consume.")
