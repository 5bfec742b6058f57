"""A real fleet for rollout tests: mosquitto with the cloud's ACLs, ``cloud serve`` (rollout
step every 0.5 s), N ``edgekit agent run`` processes with a short probation, and a
thread that keeps sending them random inputs over their HTTP APIs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from edge_agent.http_api import HTTP_BIND_ERROR
from edgekit.local_broker import free_port
from tests.brokers import Mosquitto
from tests.cli import run_main
from tests.httpserve import healthy

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "rollout-fleet-token-0123456789"


def make_uniform_onnx(path: Path) -> Path:
    """The tiny model's graph with zero weights: every input gets the same flat softmax
    (it loads, passes its golden check and answers fast, and is useless)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    inits = [numpy_helper.from_array(np.zeros((64, 10), np.float32), "w"),
             numpy_helper.from_array(np.zeros(10, np.float32), "b")]
    graph = helper.make_graph(nodes, "uniform", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 8, 8])], [helper.make_tensor_value_info(
            "probs", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def pack(model: Path, version: str, key: Path, out: Path) -> Path:
    """A signed x86-64 bundle of ``model`` named ``tiny``."""
    from export.pack import PackRequest, pack_model
    from hardware_profiles import get_profile

    pack_model(PackRequest(model_file=model, profile=get_profile("x86-64"), name="tiny",
                           version=version, key_file=key, out=out))
    return out


def wait_for(what, timeout: float, label: str, show=lambda: ""):
    """Poll ``what`` until truthy; AssertionError naming ``label`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {label}: {show()}")


def rows(engine, sql: str, **params) -> list:
    """Rows of a SQL query."""
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params))


def predict(port: int, rng: np.random.Generator) -> bool:
    """One random 8x8 input to an agent; False when it did not answer 200."""
    body = json.dumps({"input": rng.random((1, 8, 8)).tolist()}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", body,
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


class Fleet:
    """Broker, serve and agents under ``tmp``; ``stop()`` ends them all."""

    def __init__(self, tmp: Path, capsys, keypair, devices: list[str]) -> None:
        self.tmp, self.capsys, self.keypair, self.devices = tmp, capsys, keypair, devices
        self.db_url = f"sqlite:///{tmp / 'cloud.db'}"
        self.procs: list[subprocess.Popen] = []
        self.ports = {d: free_port() for d in devices}
        self.api = f"http://127.0.0.1:{free_port()}"
        self.stopping = threading.Event()
        self.broker: Mosquitto | None = None
        self.passwords: dict[str, str] = {}
        self.logs: list = []
        self.cloud: dict = {}  # more of cloud.json (e.g. an artifacts store)

    def _log(self, name: str):
        """An append handle on ``<tmp>/<name>.log`` (closed by ``stop``)."""
        handle = (self.tmp / f"{name}.log").open("ab")
        self.logs.append(handle)
        return handle

    def _cli_json(self, *args: str) -> dict:
        assert run_main(*args) == 0, self.capsys.readouterr().err
        return json.loads(self.capsys.readouterr().out)

    def start(self, v1: Path, broken: tuple[str, ...] = ()) -> None:
        """Credentials, broker, serve, agents on ``v1`` (``broken``: cannot download)."""
        for d in self.devices:
            self.passwords[d] = self._cli_json("cloud", "device", "add", d, "--fleet", "lab",
                                               "--db", self.db_url, "--json")["password"]
        assert run_main("cloud", "broker-config", "--out", str(self.tmp / "bf"), "--db",
                        self.db_url) == 0
        conf = [line for line in (self.tmp / "bf" / "mosquitto.conf").read_text().splitlines()
                if not line.startswith("listener")]
        self.broker = Mosquitto(self.tmp / "mosq", anonymous=False, max_inflight=1000,
                                extra_conf="\n".join(conf)).__enter__()
        self.start_serve()
        (self.tmp / "agent.json").write_text(json.dumps({"update": {
            "probation_inferences": 20, "probation_seconds": 3.0,
            "max_latency_ratio": 100.0}}))  # a loaded CI machine must not fail the update
        for d in self.devices:
            state = self.tmp / d
            state.mkdir()
            if d in broken:
                (state / "downloads").write_text("not a folder")  # the update cannot stage
            self.procs.append(self._agent(d, v1, state))
        self._wait_for_agents(v1)
        threading.Thread(target=self._traffic, daemon=True).start()

    def _wait_for_agents(self, bundle: Path, timeout: float = 60.0) -> None:
        """Until every agent answers /healthz. One whose port was taken between
        ``free_port()`` and its bind (by any process's outgoing connection) exits with
        the agent's one-line bind error: it is started again on another port."""
        agents = dict(zip(self.devices, self.procs[-len(self.devices):], strict=True))
        deadline = time.monotonic() + timeout
        while agents and time.monotonic() < deadline:
            for d, proc in list(agents.items()):
                if healthy(self.ports[d]):
                    del agents[d]
                elif proc.poll() is not None:
                    del agents[d]  # any other exit: the test's own waits report it
                    if HTTP_BIND_ERROR.encode() in (self.tmp / f"{d}.log").read_bytes():
                        self.ports[d] = free_port()
                        agents[d] = self._agent(d, bundle, self.tmp / d)
                        self.procs[self.procs.index(proc)] = agents[d]
            time.sleep(0.2)

    def start_serve(self) -> None:
        """``cloud serve`` with the rollout step every 0.5 s."""
        (self.tmp / "cloud.json").write_text(json.dumps({"rollouts": {"interval_s": 0.5},
                                                         **self.cloud}))
        self.serve = subprocess.Popen(
            [sys.executable, "-m", "edgekit.cli.main", "cloud", "serve", "--db", self.db_url,
             "--broker", self.broker.url, "--pubkey", str(self.keypair[1]), "--workers", "1",
             "--config", str(self.tmp / "cloud.json"), "--http", self.api.split("//")[1]],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), EDGEKIT_API_TOKEN=TOKEN),
            stdout=subprocess.DEVNULL, stderr=self._log("serve"))
        self.procs.append(self.serve)

    def _agent(self, device: str, bundle: Path, state: Path) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "edgekit.cli.main", "agent", "run", "--config",
               str(self.tmp / "agent.json"), "--bundle", str(bundle), "--device-id", device,
               "--fleet", "lab", "--broker", self.broker.url, "--username", device,
               "--pubkey", str(self.keypair[1]), "--state-dir", str(state),
               "--telemetry-interval", "0.5", "--http", f"127.0.0.1:{self.ports[device]}"]
        env = dict(os.environ, PYTHONPATH=str(ROOT), EDGEKIT_MQTT_PASSWORD=self.passwords[device])
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=self._log(device))

    def _traffic(self) -> None:
        rng = np.random.default_rng(0)
        while not self.stopping.is_set():
            for d in self.devices:
                predict(self.ports[d], rng)
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM everything, then the broker."""
        self.stopping.set()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.broker is not None:
            self.broker.__exit__(None, None, None)
        for handle in self.logs:
            handle.close()

    def publish(self, bundle: Path) -> None:
        """``edgekit cloud publish`` to the running API."""
        assert run_main("cloud", "publish", str(bundle), "--api", self.api, "--token",
                        TOKEN) == 0, self.capsys.readouterr().err
        self.capsys.readouterr()

    def rollout(self, *args: str) -> dict:
        """``edgekit rollout ARGS --json`` against the running API."""
        return self._cli_json("rollout", *args, "--api", self.api, "--token", TOKEN, "--json")
