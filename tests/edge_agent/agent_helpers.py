"""Helpers for agent tests: configs, update commands, reading the outbox."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from edge_agent.bundle.archive import file_digest
from edge_agent.config import AgentConfig


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
