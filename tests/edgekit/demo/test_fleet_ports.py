"""The demo's agents: one whose free port was taken before it bound starts again on
another port; any other failure to start stops the demo with its log's path."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge_agent.errors import EdgekitError
from edge_agent.http_api import HTTP_BIND_ERROR
from edgekit.demo import fleet as demo_fleet
from edgekit.demo.fleet import DemoFleet
from edgekit.demo.settings import for_size


def _fleet(tmp_path, monkeypatch, exits: list[str]) -> tuple[DemoFleet, list[int]]:
    """A DemoFleet whose agents are stand-in processes: each spawn takes the next entry of
    ``exits`` (a line the 'agent' logs before exiting 2), or runs on when none is left."""
    fl = DemoFleet(for_size("small", out=tmp_path), tmp_path / "key.pem")
    fl.logs.mkdir(parents=True)
    fl.passwords = {d.device_id: "pw" for d in fl.s.devices}
    ports = []

    def spawn(name, args, env):
        ports.append(int(args[args.index("--http") + 1].rsplit(":", 1)[1]))
        line = exits.pop(0) if exits and name == fl.s.devices[0].device_id else None
        code = f"print({line!r}); raise SystemExit(2)" if line else "import time; time.sleep(60)"
        with (fl.logs / f"{name}.log").open("a") as log:
            proc = subprocess.Popen([sys.executable, "-c", code], stdout=log)
        fl.procs.append((name, proc))
        if line:
            proc.wait()
        return proc

    def wait_http(url, timeout, proc, log, headers=None):
        if proc.poll() is not None:
            raise EdgekitError(f"agent exited with status {proc.returncode}; see {log}")

    monkeypatch.setattr(fl, "_spawn", spawn)
    monkeypatch.setattr(demo_fleet, "wait_http", wait_http)
    return fl, ports


def test_an_agent_whose_port_was_taken_starts_again_on_another(tmp_path, monkeypatch):
    fl, ports = _fleet(tmp_path, monkeypatch, [f"error: {HTTP_BIND_ERROR} 127.0.0.1:1: "
                                                "Address already in use"])
    first = fl.s.devices[0].device_id
    taken = fl.ports[first]
    try:
        fl.start_agents({p: tmp_path / f"{p}.ekb" for p in fl.s.profiles})
        assert fl.ports[first] != taken and ports.count(taken) == 1
        assert fl.alive() == []  # the refused process is no longer counted as a dead agent
    finally:
        fl.stop()


def test_any_other_failure_stops_the_demo(tmp_path, monkeypatch):
    fl, _ports = _fleet(tmp_path, monkeypatch, ["error: bundle signature does not verify"])
    try:
        with pytest.raises(EdgekitError, match="exited with status 2"):
            fl.start_agents({p: tmp_path / f"{p}.ekb" for p in fl.s.profiles})
    finally:
        fl.stop()
