"""Secrets stay secret: a real ``cloud serve`` with a database password, an API token,
webhook secrets and the cloud's MQTT password hands none of them to its ingest workers'
command lines or environments (``/proc/PID/cmdline``, ``/proc/PID/environ``), and
writes none to its logs; the workers still get what they need (they store messages)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.brokers import Mosquitto
from tests.cloud_sync.ingest import messages as m
from tests.cloud_sync.ingest.conftest import Publisher, wait_subscribed, wait_until
from tests.cloud_sync.test_serve import _children

SECRETS = {"db": "Db-Pa55word-x9", "api_token": "ApiT0ken-x9", "webhook": "HookSecret-x9",
           "hook_env": "HookEnvSecret-x9", "mqtt": "MqttPa55-x9", "env_token": "EnvT0ken-x9",
           "artifact": "ArtifactUrlSecret-x9", "pg_env": "PgEnvPa55-x9"}


def _config(tmp_path: Path, db_url: str, broker: Mosquitto) -> Path:
    url = sa.make_url(db_url).set(password=SECRETS["db"]).render_as_string(hide_password=False)
    hook = "http://127.0.0.1:9/hook"
    doc = {"data_dir": str(tmp_path / "data"), "db": url, "broker": broker.url,
           "api_token": SECRETS["api_token"], "workers": 2,
           "triggers": {"default": {"actions": [
               {"kind": "webhook", "url": hook, "secret": SECRETS["webhook"]},
               {"kind": "webhook", "url": hook, "secret_env": "ACME_HOOK"}]}}}
    path = tmp_path / "cloud.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


def _secret_env() -> dict[str, str]:
    return {"EDGEKIT_CLOUD_MQTT_PASSWORD": SECRETS["mqtt"], "ACME_HOOK": SECRETS["hook_env"],
            "EDGEKIT_API_TOKEN": SECRETS["env_token"],
            "EDGEKIT_ARTIFACT_URL_SECRET": SECRETS["artifact"],
            "PGPASSWORD": SECRETS["pg_env"]}  # trust auth: ignored, yet handed over


def _leaks(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_no_secret_in_worker_cmdline_environ_or_serve_logs(tmp_path, db_url, engine):
    from edge_agent.bundle.signing import generate_keypair

    _priv, pub = generate_keypair(tmp_path / "keys")
    log = tmp_path / "serve.log"
    with Mosquitto(tmp_path / "broker", max_inflight=1000) as broker, open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgekit.cli.main", "cloud", "serve", "--config",
             str(_config(tmp_path, db_url, broker)), "--pubkey", str(pub), "--no-http"],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **_secret_env(), "EDGEKIT_LOG_LEVEL": "DEBUG"})
        try:
            wait_until(lambda: len(_children(proc.pid)) == 2, 60, "2 ingest workers")
            publisher = Publisher(broker.port)
            wait_subscribed(engine, publisher, timeout=60)  # the workers got their config
            publisher.send([(m.topic("pi-1"), m.telemetry("pi-1", 1))])
            publisher.close()
            for pid in _children(proc.pid):
                proc_dir = Path("/proc") / str(pid)
                seen = (proc_dir / "cmdline").read_bytes() + (proc_dir / "environ").read_bytes()
                assert not _leaks(seen.decode(errors="replace")), f"worker {pid} shows secrets"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text(errors="replace")
    assert "ingest" in text, text  # the logs were captured at all
    assert not _leaks(text), f"secrets {_leaks(text)} in the serve log:\n{text[-3000:]}"
