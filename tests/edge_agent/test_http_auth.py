"""The HTTP API's bearer token: every endpoint but /healthz needs it once one is set, and the
agent refuses to listen beyond loopback without one (in-process and as `edgekit agent run`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig, is_loopback, token_matches
from edge_agent.errors import ConfigError
from tests.edge_agent.agent_helpers import agent_config

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-for-the-tests-0123"


@pytest.fixture(autouse=True)
def _no_token_in_env(monkeypatch):
    monkeypatch.delenv("EDGEKIT_AGENT_TOKEN", raising=False)


@pytest.fixture()
def guarded(tmp_path, keypair, make_onnx_bundle):
    agent = Agent(agent_config(tmp_path / "state", keypair[1], make_onnx_bundle("1"),
                               http="127.0.0.1:0", http_token=TOKEN))
    agent.start()
    yield f"http://127.0.0.1:{agent.http.server_address[1]}"
    agent.stop()


def _call(url: str, token: str | None = None, body: bytes | None = None) -> tuple[int, dict, str]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
            return resp.status, (json.loads(text) if text.startswith("{") else {}), ""
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers.get("WWW-Authenticate", "")


PREDICT = json.dumps({"input": np.zeros((1, 1, 8, 8)).tolist()}).encode()
ENDPOINTS = [("/v1/predict", PREDICT), ("/metrics", None), ("/v1/measure", None)]


@pytest.mark.parametrize("path, body", ENDPOINTS)
@pytest.mark.parametrize("token", [None, "wrong-token-of-some-length", TOKEN + "x", ""])
def test_without_the_right_token_every_endpoint_is_401(guarded, path, body, token):
    status, doc, challenge = _call(guarded + path, token, body)
    assert status == 401 and challenge == "Bearer"
    assert "Authorization: Bearer" in doc["error"] and "\n" not in doc["error"]


@pytest.mark.parametrize("path, body", ENDPOINTS)
def test_with_the_token_every_endpoint_answers(guarded, path, body):
    status, _doc, _ = _call(guarded + path, TOKEN, body)
    assert status == 200


def test_healthz_needs_no_token(guarded):
    status, doc, _ = _call(guarded + "/healthz")
    assert status == 200 and doc["status"] == "ok"


def test_token_compare_needs_the_bearer_scheme_and_the_exact_token():
    assert token_matches(f"Bearer {TOKEN}", TOKEN) and token_matches(f"bearer {TOKEN}", TOKEN)
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", "Bearer"):
        assert not token_matches(header, TOKEN)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.5", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False),
    ("device.local", False),
])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("address", ["0.0.0.0:8080", "192.168.1.20:8080", "[::]:8080"])
def test_no_token_beyond_loopback_refuses_to_start(tmp_path, keypair, address):
    with pytest.raises(ConfigError, match="needs a token: set 'http_token'") as info:
        agent_config(tmp_path, keypair[1], http=address)
    assert "\n" not in str(info.value) and "secrets.token_urlsafe" in str(info.value)


def test_a_config_made_without_validation_is_still_refused_by_the_server(
        tmp_path, keypair, make_onnx_bundle):
    cfg = AgentConfig(device_id="dev-1", fleet="test", state_dir=str(tmp_path / "s"),
                      pubkeys=[str(keypair[1])], bundle=str(make_onnx_bundle("1")),
                      http="0.0.0.0:0")
    agent = Agent(cfg)
    try:
        with pytest.raises(ConfigError, match="needs a token"):
            agent.start()
    finally:
        agent.stop()


def test_token_from_file_or_environment(tmp_path, keypair, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    cfg = agent_config(tmp_path, keypair[1], http="0.0.0.0:8080", http_token_file=str(token_file))
    assert cfg.resolved_http_token() == TOKEN
    monkeypatch.setenv("EDGEKIT_AGENT_TOKEN", TOKEN)
    assert agent_config(tmp_path, keypair[1], http="0.0.0.0:8080").resolved_http_token() == TOKEN


@pytest.mark.parametrize("over, match", [
    ({"http_token": "short"}, "at least 16 characters"),
    ({"http_token_file": "/nonexistent/token"}, "cannot read http_token_file"),
    ({"measure_max_bytes": 0}, "'measure_max_bytes' must be > 0"),
])
def test_bad_token_settings_are_clear(tmp_path, keypair, over, match):
    with pytest.raises(ConfigError, match=match):
        agent_config(tmp_path, keypair[1], http="127.0.0.1:8080", **over)


def test_a_token_lets_the_agent_listen_on_all_interfaces(tmp_path, keypair, make_onnx_bundle):
    cfg = agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"), http="0.0.0.0:0",
                       http_token=TOKEN)
    with Agent(cfg) as agent:
        agent.start()
        base = f"http://127.0.0.1:{agent.http.server_address[1]}"
        assert _call(base + "/v1/predict", TOKEN, PREDICT)[0] == 200
        assert _call(base + "/v1/predict", None, PREDICT)[0] == 401


def _agent_run(tmp_path: Path, keypair, bundle: Path, *extra: str,
               env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgekit.cli.main", "agent", "run", "--bundle", str(bundle),
           "--device-id", "dev-1", "--fleet", "test", "--pubkey", str(keypair[1]),
           "--state-dir", str(tmp_path / "state"), *extra]
    env = {k: v for k, v in os.environ.items() if k != "EDGEKIT_AGENT_TOKEN"} | (env or {})
    return subprocess.run(cmd, cwd=ROOT, env=env | {"PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)


def test_agent_run_on_all_interfaces_without_a_token_exits_with_one_line(
        tmp_path, keypair, make_onnx_bundle):
    done = _agent_run(tmp_path, keypair, make_onnx_bundle("1"), "--http", "0.0.0.0:0")
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert "needs a token" in lines[0] and "--http-token-file" in lines[0]
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())


def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path, keypair, make_onnx_bundle):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        agent = Agent(agent_config(tmp_path / "state", keypair[1], make_onnx_bundle("1"),
                                   http=f"127.0.0.1:{port}", http_token=TOKEN,
                                   broker="mqtt://127.0.0.1:1"))
        try:
            with pytest.raises(ConfigError, match=rf"cannot serve HTTP on 127.0.0.1:{port}: "
                                                  r".*in use; pick another --http") as info:
                agent.start()
            assert "\n" not in str(info.value)
            assert agent.link is None and not agent._threads  # never announced, nothing runs
        finally:
            agent.stop()
