"""Helpers for agent tests: configs, update commands, reading the outbox."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from edge_agent.bundle.archive import file_digest
from edge_agent.config import AgentConfig
from edgekit.local_broker import free_port

ROOT = Path(__file__).resolve().parents[2]


def agent_config(state: Path, pubkey: Path, bundle: Path | None = None, **over) -> AgentConfig:
    doc = {"device_id": "dev-1", "fleet": "test", "state_dir": str(state),
           "pubkeys": [str(pubkey)], "bundle": str(bundle) if bundle else None,
           "telemetry_interval_s": 3600.0,
           "update": {"probation_inferences": 30, "probation_seconds": 30.0,
                      "download_timeout_s": 5.0, "download_retries": 2}}
    doc.update(over)
    return AgentConfig.from_dict(doc)


def update_cmd(url: str, bundle: Path, version: str, **over) -> bytes:
    sha, _size = file_digest(bundle)
    args = {"url": url, "sha256": sha, "version": version}
    args.update(over)
    return json.dumps({"v": 1, "cmd_id": uuid.uuid4().hex[:8], "type": "update",
                       "ts": time.time(), "args": args}).encode()


def command(ctype: str, **args) -> bytes:
    return json.dumps({"v": 1, "cmd_id": uuid.uuid4().hex[:8], "type": ctype,
                       "ts": time.time(), "args": args}).encode()


def results(agent) -> list[dict]:
    """Every cmd/result message queued in the agent's outbox, oldest first."""
    rows = agent.outbox.pending(100000)
    return [json.loads(r.payload) for r in rows if r.kind == "cmd/result"]


def messages(agent, kind: str) -> list[dict]:
    return [json.loads(r.payload) for r in agent.outbox.pending(100000) if r.kind == kind]


def command_with(ctype: str, cmd_id: str | None = None, expires_at: float | None = None,
                 **args) -> bytes:
    """A command with a chosen cmd_id and/or expiry (else as ``command``)."""
    doc = json.loads(command(ctype, **args))
    if cmd_id is not None:
        doc["cmd_id"] = cmd_id
    if expires_at is not None:
        doc["expires_at"] = expires_at
    return json.dumps(doc).encode()


@contextlib.contextmanager
def http_agent_process(bundle: Path, pubkey: Path, state: Path, token: str, device_id: str,
                       profile: str = "rpi4") -> Iterator[str]:
    """A real ``edgekit agent run`` serving ``bundle`` with its HTTP API guarded by
    ``token``; yields the API's base URL, terminates the process afterwards."""
    token_file = state.parent / f"{device_id}.token"
    token_file.write_text(token)
    port = free_port()
    cmd = [sys.executable, "-m", "edgekit.cli.main", "agent", "run", "--bundle", str(bundle),
           "--device-id", device_id, "--fleet", "test", "--pubkey", str(pubkey),
           "--state-dir", str(state), "--profile", profile, "--http", f"127.0.0.1:{port}",
           "--http-token-file", str(token_file)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the agent's HTTP API did not come up")
