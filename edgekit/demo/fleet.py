"""The demo's running parts, all real processes: a Mosquitto enforcing the cloud's
generated credentials and ACLs, ``edgekit cloud serve`` (SQLite) and one ``edgekit agent
run`` per device. ``stop()`` ends every process it started, by PID, agents first.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.errors import EdgekitError
from edge_agent.http_api import HTTP_BIND_ERROR
from edgekit.demo.settings import FLEET, DemoSettings
from edgekit.local_broker import LocalMosquitto, free_port, host_port, port_open

if TYPE_CHECKING:
    from edgekit.demo.tasks.base import DemoTask

ROOT = Path(__file__).resolve().parents[2]
PORT_ATTEMPTS = 3  # an agent whose free port was taken before it bound starts again


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path,
              headers: dict[str, str] | None = None) -> None:
    """Wait until ``url`` answers 200; a one-line error (with the log's path) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EdgekitError(f"{proc.args[3:5]} exited with status {proc.returncode}; "
                               f"see {log}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                        timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise EdgekitError(f"{url} did not answer within {timeout:g} s; see {log}")


def _end_group(pgid: int, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, whatever is left in a process group the demo started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)


class DemoFleet:
    """Broker, cloud and agents of one demo run, under ``<out>/fleet``."""

    def __init__(self, s: DemoSettings, pubkey: Path, task: DemoTask | None = None) -> None:
        from edgekit.demo.tasks import task_for

        self.s, self.pubkey = s, pubkey
        self.task = task or task_for(s.task)
        self.dir = (s.out / "fleet").resolve()
        self.logs = self.dir / "logs"
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.handles: list[Any] = []
        self.broker: LocalMosquitto | None = None
        self.broker_url = s.broker or ""
        self.api = f"http://127.0.0.1:{free_port()}"
        self.token = secrets.token_urlsafe(24)
        self.ports = {d.device_id: free_port() for d in s.devices}
        self.passwords: dict[str, str] = {}

    # -- files ---------------------------------------------------------------------------
    @property
    def cloud_config(self) -> Path:
        return self.dir / "cloud.json"

    @property
    def token_file(self) -> Path:
        return self.dir / "api-token"

    def write_cloud_config(self, retrain_config: Path) -> dict[str, Any]:
        """The cloud's settings: SQLite store, fast trigger and rollout steps, and the
        trigger's command action (the retraining pipeline)."""
        s = self.s
        doc = {
            "data_dir": str(self.dir / "cloud"), "db": f"sqlite:///{self.dir / 'cloud.db'}",
            "triggers": {"interval_s": 2.0, "default": {
                "window_s": s.window_s, "k": 2, "n": 3, "min_devices": 2, "fleet_wide": False,
                "kinds": list(self.task.trigger_kinds), "cooldown_s": 3600.0,
                "drift": {"min_inferences": 40}, "export_max_samples": 5000,
                "actions": [{"kind": "command", "timeout_s": s.retrain_timeout_s,
                             "command": [sys.executable, "-m", self.task.retrain_module,
                                         "--config", str(retrain_config)]}]}},
            "rollouts": {"interval_s": 1.0}}
        self.cloud_config.write_text(json.dumps(doc, indent=2))
        self.token_file.write_text(self.token + "\n")
        self.token_file.chmod(0o600)
        return doc

    def register(self) -> dict[str, Any]:
        """Devices with fresh credentials, the cloud's service user, and the broker's
        password and ACL files (``<fleet>/broker``)."""
        from cloud_sync.config import CloudConfig
        from cloud_sync.registry import add_device, ensure_service_account, write_broker_config
        from cloud_sync.store import open_store, transaction

        cfg = CloudConfig.load(self.cloud_config)
        engine = open_store(cfg.db)
        try:
            with transaction(engine) as conn:
                for d in self.s.devices:
                    self.passwords[d.device_id] = add_device(conn, d.device_id, FLEET).password
                ensure_service_account(conn, cfg.service_user, cfg.service_password_file)
                files = write_broker_config(conn, self.dir / "broker")
        finally:
            engine.dispose()
        return {"passwd": files.passwd, "acl": files.acl, "devices": files.devices}

    # -- processes -----------------------------------------------------------------------
    def _log(self, name: str) -> Any:
        self.logs.mkdir(parents=True, exist_ok=True)
        handle = (self.logs / f"{name}.log").open("ab")
        self.handles.append(handle)
        return handle

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "edgekit.cli.main", *args], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                                stdout=self._log(name), stderr=subprocess.STDOUT,
                                start_new_session=True)  # Ctrl-C reaches the demo, which
        self.procs.append((name, proc))                  # stops everything in order
        return proc

    def start_broker(self, files: dict[str, Any]) -> str:
        """The named broker, or a private mosquitto enforcing the generated files."""
        if self.s.broker:
            host, port = host_port(self.s.broker)
            if not port_open(host, port, timeout=2.0):
                raise EdgekitError(f"the broker {self.s.broker} does not answer; start it, or "
                                   "leave out --broker for a private mosquitto")
            return self.s.broker
        conf = (f"password_file {files['passwd']}", f"acl_file {files['acl']}")
        self.broker = LocalMosquitto(self.dir / "mosquitto", extra_conf=conf).start()
        self.broker_url = self.broker.url
        return self.broker_url

    def start_cloud(self) -> None:
        """``edgekit cloud serve`` (ingest, API, dashboard, triggers, rollouts)."""
        proc = self._spawn("cloud-serve", [
            "cloud", "serve", "--config", str(self.cloud_config), "--broker", self.broker_url,
            "--pubkey", str(self.pubkey.resolve()), "--workers", "1",
            "--http", self.api.split("//")[1]], {"EDGEKIT_API_TOKEN": self.token})
        wait_http(f"{self.api}/healthz", 60, proc, self.logs / "cloud-serve.log",
                  {"Authorization": f"Bearer {self.token}"})

    def start_agents(self, bundles: dict[str, Path]) -> None:
        """One agent process per device on its profile's bundle."""
        settings = self.dir / "agent.json"
        settings.write_text(json.dumps({
            **self.task.agent_settings(),
            # a loaded 2-core machine must not fail an update on timer noise: the demo's
            # models answer in ~0.1 ms, and a busy core adds more than 0.5 ms to a median
            # (a CI run rolled v2 back at 0.65 vs 0.09 ms); 2 ms, as the cloud's p95 floor
            "update": {"probation_inferences": 20, "probation_seconds": 3.0,
                       "max_latency_ratio": 5.0, "min_latency_regression_ms": 2.0}}))
        procs = [(d, self._agent(d, settings, bundles[d.profile])) for d in self.s.devices]
        for d, proc in procs:
            for attempt in range(PORT_ATTEMPTS):
                log = self.logs / f"{d.device_id}.log"
                try:
                    wait_http(f"http://127.0.0.1:{self.ports[d.device_id]}/healthz", 60, proc,
                              log)
                    break
                except EdgekitError:
                    if attempt == PORT_ATTEMPTS - 1 or proc.poll() is None or \
                            HTTP_BIND_ERROR not in log.read_text(errors="replace"):
                        raise
                    # the port went to another process after free_port(): take another
                    self.procs.remove((d.device_id, proc))
                    self.ports[d.device_id] = free_port()
                    proc = self._agent(d, settings, bundles[d.profile])

    def _agent(self, d: Any, settings: Path, bundle: Path) -> subprocess.Popen:
        state = self.dir / "devices" / d.device_id
        state.mkdir(parents=True, exist_ok=True)
        return self._spawn(d.device_id, [
            "agent", "run", "--config", str(settings), "--bundle", str(bundle.resolve()),
            "--device-id", d.device_id, "--fleet", FLEET, "--broker", self.broker_url,
            "--username", d.device_id, "--pubkey", str(self.pubkey.resolve()),
            "--state-dir", str(state), "--http", f"127.0.0.1:{self.ports[d.device_id]}"],
            {"EDGEKIT_MQTT_PASSWORD": self.passwords[d.device_id]})

    def alive(self) -> list[str]:
        """Names of processes that have exited (empty when all run)."""
        return [name for name, proc in self.procs if proc.poll() is not None]

    def stop(self) -> None:
        """SIGTERM the agents, then the cloud, then the broker; SIGKILL what lingers. Each
        process leads its own process group, so what it started (a retraining command
        still running under ``cloud serve``) is ended with it."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            _end_group(proc.pid)
        if self.broker is not None:
            self.broker.stop()
        for handle in self.handles:
            handle.close()
        self.procs, self.handles = [], []

    # -- the API, as a user's script would call it ---------------------------------------
    def publish(self, bundle: Path) -> dict[str, Any]:
        """``edgekit cloud publish``: the bundle and its reference statistics (what drift
        is scored against) into the cloud's registry."""
        req = urllib.request.Request(f"{self.api}/api/v1/models", bundle.read_bytes(),
                                     {"Authorization": f"Bearer {self.token}",
                                      "Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def get(self, path: str) -> Any:
        """GET ``/api/v1/<path>`` as JSON."""
        req = urllib.request.Request(f"{self.api}/api/v1/{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())
