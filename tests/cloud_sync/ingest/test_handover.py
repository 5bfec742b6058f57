"""The worker handover: secrets leave the environment and travel on stdin, intact."""

from __future__ import annotations

import io

from cloud_sync.config import CloudConfig
from cloud_sync.ingest import handover

ENV = {"PATH": "/bin", "HOME": "/root", "EDGEKIT_LOG_LEVEL": "INFO",
       "EDGEKIT_CLOUD_MQTT_PASSWORD": "mqtt-pw", "PGPASSWORD": "pg-pw",
       "EDGEKIT_API_TOKEN": "tok", "ACME_HOOK": "hook", "AWS_SECRET_ACCESS_KEY": "aws"}


def _cfg() -> CloudConfig:
    hook = {"kind": "webhook", "url": "http://127.0.0.1:9/h", "secret_env": "ACME_HOOK"}
    return CloudConfig.from_dict({"data_dir": "/tmp/x", "db": "postgresql://u:dbpw@h/d",
                                  "api_token": "tok", "triggers": {"default": {
                                      "actions": [hook]}}})


def test_worker_env_keeps_plain_variables_and_drops_secrets():
    assert handover.worker_env(_cfg(), ENV) == {"PATH": "/bin", "HOME": "/root",
                                                "EDGEKIT_LOG_LEVEL": "INFO"}


def test_the_stdin_document_carries_the_config_and_only_the_secrets_a_worker_needs():
    config, env = handover.read(io.BytesIO(handover.encode(_cfg(), ENV)))
    assert CloudConfig.from_dict(config) == _cfg()
    assert env == {"EDGEKIT_CLOUD_MQTT_PASSWORD": "mqtt-pw", "PGPASSWORD": "pg-pw"}
