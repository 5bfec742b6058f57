"""The action outbox: a working webhook gets a verifiable signature and the idempotency
key; a failing one is retried with backoff, then recorded as failed; a command gets the
trigger and a samples export that loads; an MQTT event is published; a claim is taken
by one runner only."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from cloud_sync.actions.outbox import claim
from cloud_sync.actions.worker import run_due_actions
from cloud_sync.store import transaction
from cloud_sync.triggers.controller import controller_step
from cloud_sync.triggers.queries import get_trigger
from tests.cloud_sync.triggers.conftest import T0, WINDOW_S
from tests.cloud_sync.triggers.helpers import devices, publish_reference, store_windows

SECRET = "webhook-secret-42"


class Hook:
    """An HTTP server on 127.0.0.1 answering ``status`` and recording what it got."""

    def __init__(self, status: int) -> None:
        got = self.got = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.append((time.monotonic(), dict(self.headers), body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hook_factory():
    hooks: list[Hook] = []

    def make(status: int) -> Hook:
        hooks.append(Hook(status))
        return hooks[-1]

    yield make
    for hook in hooks:
        hook.close()


def _fire(engine, cfg) -> int:
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devices(6, drifted=3), T0, 3, WINDOW_S, samples=1)
        fired = controller_step(conn, cfg, T0 + 3 * WINDOW_S).fired
    assert len(fired) == 1
    return fired[0]


def _work_until_settled(engine, cfg, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run_due_actions(engine, cfg)
        with engine.connect() as conn:
            states = {a["state"] for t in [get_trigger(conn, 1)] for a in t["actions"]}
        if states <= {"done", "failed"}:
            return
        time.sleep(0.02)
    raise AssertionError(f"actions still {states} after {timeout} s")


def test_working_webhook_gets_a_verifiable_signature(engine, make_trigger_cfg, hook_factory):
    hook = hook_factory(200)
    cfg = make_trigger_cfg(actions=[{"kind": "webhook", "url": hook.url, "secret": SECRET}])
    trigger_id = _fire(engine, cfg)
    _work_until_settled(engine, cfg)
    (_, headers, body), = hook.got
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Edgekit-Signature"], expected)
    assert headers["Idempotency-Key"] == f"{trigger_id}-0"
    doc = json.loads(body)
    assert doc["id"] == trigger_id and doc["fleet"] == "f1" and doc["evidence"]["windows"]
    with engine.connect() as conn:
        action, = get_trigger(conn, trigger_id)["actions"]
    assert action["state"] == "done" and action["attempts"] == 1
    assert action["config"]["secret"] == "***" and action["history"][0]["ok"]


def test_failing_webhook_is_retried_with_backoff_then_failed(engine, make_trigger_cfg,
                                                             hook_factory):
    hook = hook_factory(500)
    cfg = make_trigger_cfg(actions=[{"kind": "webhook", "url": hook.url, "secret": SECRET}],
                           max_attempts=3, backoff_s=0.1, backoff_max_s=1.0)
    trigger_id = _fire(engine, cfg)
    _work_until_settled(engine, cfg)
    with engine.connect() as conn:
        action, = get_trigger(conn, trigger_id)["actions"]
    assert action["state"] == "failed" and action["attempts"] == 3 == len(hook.got)
    assert [h["ok"] for h in action["history"]] == [False] * 3
    assert "HTTP 500" in action["last_error"]
    gaps = np.diff([t for t, _h, _b in hook.got])
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # between half and all of 0.1 x 2^attempt
    assert {h["Idempotency-Key"] for _t, h, _b in hook.got} == {f"{trigger_id}-0"}


def test_command_gets_the_trigger_and_a_samples_export_that_loads(engine, make_trigger_cfg,
                                                                 tmp_path):
    out = tmp_path / "seen.json"
    script = ("import json, os, sys, numpy as np\n"
              "z = np.load(os.environ['EDGEKIT_SAMPLES'])\n"
              "ev = json.load(open(os.environ['EDGEKIT_EVIDENCE']))\n"
              "json.dump({k: os.environ[k] for k in os.environ if k.startswith('EDGEKIT_')} | "
              "{'n': int(z['inputs'].shape[0]), 'devices': ev['devices_affected']}, "
              f"open({str(out)!r}, 'w'))\n")
    cfg = make_trigger_cfg(actions=[{"kind": "command", "command": [sys.executable, "-c",
                                                                    script]}])
    trigger_id = _fire(engine, cfg)
    _work_until_settled(engine, cfg)
    seen = json.loads(out.read_text())
    assert seen["EDGEKIT_TRIGGER_ID"] == str(trigger_id) and seen["EDGEKIT_FLEET"] == "f1"
    assert (seen["EDGEKIT_MODEL"], seen["EDGEKIT_VERSION"]) == ("sim-model", "1")
    assert seen["n"] == 18 and sorted(seen["devices"]) == ["dev-000", "dev-001", "dev-002"]


def test_a_claim_is_taken_once(engine, make_trigger_cfg):
    cfg = make_trigger_cfg(actions=[{"kind": "command", "command": ["true"]}])
    _fire(engine, cfg)
    now = time.time()
    with transaction(engine) as conn:
        assert claim(conn, 1, now) is True
        assert claim(conn, 1, now) is False


# What a command child may see of the cloud's environment (issue 17, item 3).
CLOUD_SECRETS = {"EDGEKIT_API_TOKEN": "api-token-secret-1",
                 "EDGEKIT_CLOUD_MQTT_PASSWORD": "mqtt-password-secret-2",
                 "EDGEKIT_ARTIFACT_URL_SECRET": "artifact-url-secret-3",
                 "DATABASE_URL": "postgresql://u:db-password-secret-4@h/db"}


def test_command_child_environment_holds_only_what_is_allowed(engine, make_trigger_cfg,
                                                              tmp_path, monkeypatch):
    """Read by the kernel's /proc/PID/environ of the running child: the trigger's
    EDGEKIT_* variables, PATH, HOME, LANG and the policy's env_pass, no secret."""
    for name, value in {**CLOUD_SECRETS, "TRAINING_BUCKET": "s3://bucket",
                        "UNNAMED_VAR": "x", "LANG": "C.UTF-8", "HOME": "/home/cloud"}.items():
        monkeypatch.setenv(name, value)
    pid_file, go = tmp_path / "pid", tmp_path / "go"
    script = ("import os, pathlib, time\n"
              f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
              f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.02)\n")
    cfg = make_trigger_cfg(actions=[{"kind": "command", "command": [sys.executable, "-c", script],
                                     "env_pass": ["TRAINING_BUCKET", "NOT_SET_ANYWHERE"]}])
    trigger_id = _fire(engine, cfg)
    worker = threading.Thread(target=_work_until_settled, args=(engine, cfg), daemon=True)
    worker.start()
    try:
        environ = _environ_of(pid_file)
    finally:
        go.touch()
        worker.join(30)
    assert set(environ) == {"PATH", "HOME", "LANG", "TRAINING_BUCKET", "EDGEKIT_TRIGGER_ID",
                            "EDGEKIT_FLEET", "EDGEKIT_MODEL", "EDGEKIT_VERSION",
                            "EDGEKIT_SAMPLES", "EDGEKIT_EVIDENCE"}
    assert environ["TRAINING_BUCKET"] == "s3://bucket" and environ["HOME"] == "/home/cloud"
    assert environ["EDGEKIT_TRIGGER_ID"] == str(trigger_id)
    raw = "\n".join(f"{k}={v}" for k, v in environ.items())
    assert not [s for s in CLOUD_SECRETS.values() if s in raw]
    with engine.connect() as conn:
        action, = get_trigger(conn, trigger_id)["actions"]
    assert action["state"] == "done"


def test_env_pass_takes_only_variable_names(make_trigger_cfg):
    from edge_agent.errors import ConfigError

    with pytest.raises(ConfigError, match=r"env_pass\.0': String should match pattern"):
        make_trigger_cfg(actions=[{"kind": "command", "command": ["true"],
                                   "env_pass": ["PATH=/evil"]}])


def _environ_of(pid_file, timeout: float = 20.0) -> dict[str, str]:
    """The environment the kernel recorded for the process whose pid the file names."""
    deadline = time.monotonic() + timeout
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.02)
    raw = Path(f"/proc/{pid_file.read_text()}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if item)
