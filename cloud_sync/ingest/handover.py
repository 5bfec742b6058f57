"""Handing the config and secrets to an ingest worker process without showing them.

A command line (``/proc/PID/cmdline``, ``ps``) is readable by every local user, and an
environment (``/proc/PID/environ``) by the same user and root, and both end up in crash
reports and process listings. So ``cloud serve`` starts each worker with a plain
command line and an environment stripped of secrets (``worker_env``), and writes the
whole config plus the secret variables a worker may need (the cloud's MQTT password,
libpq's ``PGPASSWORD``) as one JSON document to the worker's stdin, a pipe only the two
processes hold (``encode`` / ``read``). The worker puts those into its ``os.environ``;
``/proc/PID/environ`` shows only the environment it was started with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import IO, Any

from cloud_sync.config import CloudConfig
from cloud_sync.ingest.mqtt import PASSWORD_ENV
from edge_agent.errors import ConfigError

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE|_KEY$", re.I)
WORKER_SECRETS = (PASSWORD_ENV, "PGPASSWORD")  # what a worker may need: sent on stdin


def secret_env_names(cfg: CloudConfig, environ: Mapping[str, str]) -> set[str]:
    """Variables of ``environ`` that hold (or may hold) a secret: by name, or named by a
    webhook's ``secret_env``."""
    named = set(_webhook_secret_envs(cfg))
    return {k for k in environ if k in named or SECRET_NAME.search(k)}


def worker_env(cfg: CloudConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without any secret: what a worker process starts with."""
    secrets = secret_env_names(cfg, environ)
    return {k: v for k, v in environ.items() if k not in secrets}


def encode(cfg: CloudConfig, environ: Mapping[str, str]) -> bytes:
    """The document a worker reads on stdin: its config and the secrets it needs."""
    env = {k: environ[k] for k in WORKER_SECRETS if k in environ}
    return json.dumps({"config": cfg.model_dump(mode="json"), "env": env}).encode()


def read(stream: IO[bytes]) -> tuple[dict[str, Any], dict[str, str]]:
    """(config mapping, secret variables) from ``stream``; ConfigError if unreadable."""
    try:
        doc = json.loads(stream.read() or b"null")
        config, env = doc["config"], doc.get("env", {})
    except (ValueError, TypeError, KeyError):
        raise ConfigError("the config on stdin is not a handover document; start workers "
                          "with 'edgekit cloud serve', or pass --config FILE") from None
    if not isinstance(config, dict) or not isinstance(env, dict):
        raise ConfigError("the config on stdin is malformed; start workers with "
                          "'edgekit cloud serve'")
    return config, {str(k): str(v) for k, v in env.items()}


def _webhook_secret_envs(cfg: CloudConfig) -> Iterator[str]:
    policies = [cfg.triggers.default, *(cfg.triggers.policy_for(f) for f in cfg.triggers.fleets)]
    for policy in policies:
        for action in policy.actions:
            name = getattr(action, "secret_env", None)
            if name:
                yield name
