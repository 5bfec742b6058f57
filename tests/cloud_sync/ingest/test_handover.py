"""The worker handover: secrets leave the environment and travel on stdin, intact."""

from __future__ import annotations

import io

from cloud_sync.config import CloudConfig
from cloud_sync.ingest import handover

ENV = {"PATH": "/bin", "HOME": "/root", "EDGEKIT_LOG_LEVEL": "INFO",
       "PGPASSFILE": "/etc/edgekit/pgpass", "PGSSLMODE": "verify-full",
       "EDGEKIT_CLOUD_MQTT_PASSWORD": "mqtt-pw", "PGPASSWORD": "pg-pw",
       "PGSSLPASSWORD": "pg-ssl-key-pw", "EDGEKIT_API_TOKEN": "tok", "ACME_HOOK": "hook",
       "AWS_SECRET_ACCESS_KEY": "aws", "MY_BROKER_CREDENTIALS": "cred"}
PLAIN = {"PATH", "HOME", "EDGEKIT_LOG_LEVEL", "PGPASSFILE", "PGSSLMODE"}


def _cfg() -> CloudConfig:
    hook = {"kind": "webhook", "url": "http://127.0.0.1:9/h", "secret_env": "ACME_HOOK"}
    return CloudConfig.from_dict({"data_dir": "/tmp/x", "db": "postgresql://u:dbpw@h/d",
                                  "api_token": "tok", "triggers": {"default": {
                                      "actions": [hook]}}})


def test_worker_env_keeps_plain_variables_and_drops_secrets():
    assert handover.worker_env(_cfg(), ENV) == {k: ENV[k] for k in PLAIN}


def test_the_stdin_document_carries_the_config_and_every_stripped_variable():
    config, env = handover.read(io.BytesIO(handover.encode(_cfg(), ENV)))
    assert CloudConfig.from_dict(config) == _cfg()
    assert env == {k: v for k, v in ENV.items() if k not in PLAIN}
    assert env["PGSSLPASSWORD"] == "pg-ssl-key-pw" and env["ACME_HOOK"] == "hook"


def test_the_worker_ends_up_with_the_servers_whole_environment():
    """What the worker starts with plus what it reads on stdin (``os.environ.update`` in
    ``cloud_sync.ingest.__main__``) is the server's environment, secrets included: a
    deployment whose store or broker login needs e.g. PGSSLPASSWORD keeps working."""
    started_with = handover.worker_env(_cfg(), ENV)
    _config, secrets = handover.read(io.BytesIO(handover.encode(_cfg(), ENV)))
    assert {**started_with, **secrets} == ENV
    assert not set(started_with) & set(secrets)


def test_a_fleet_policys_webhook_secret_variable_is_stripped_and_handed_over():
    fleet_hook = {"kind": "webhook", "url": "http://127.0.0.1:9/f", "secret_env": "FLEET_HOOK"}
    cfg = CloudConfig.from_dict({"data_dir": "/tmp/x", "triggers": {
        "fleets": {"f1": {"actions": [fleet_hook]}}}})
    environ = {"PATH": "/bin", "FLEET_HOOK": "fleet-hook-secret"}
    assert handover.worker_env(cfg, environ) == {"PATH": "/bin"}
    assert handover.read(io.BytesIO(handover.encode(cfg, environ)))[1] == {
        "FLEET_HOOK": "fleet-hook-secret"}
