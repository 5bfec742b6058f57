"""Handing the config and secrets to an ingest worker process without showing them.

A command line (``/proc/PID/cmdline``, ``ps``) is readable by every local user, and an
environment (``/proc/PID/environ``) by the same user and root, and both end up in crash
reports and process listings. So ``cloud serve`` starts each worker with a plain
command line and an environment stripped of secrets (``worker_env``), and writes the
whole config plus every variable it stripped (the cloud's MQTT password, libpq's
``PGPASSWORD`` and ``PGSSLPASSWORD``, whatever a deployment's store or broker login
needs) as one JSON document to the worker's stdin, a pipe only the two processes hold
(``encode`` / ``read``). The worker puts those back into its ``os.environ``, so it sees
the server's environment; ``/proc/PID/environ`` shows only the one it was started with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import IO, Any

from cloud_sync.config import CloudConfig, policies
from edge_agent.errors import ConfigError

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE|_KEY$", re.I)


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
    """The document a worker reads on stdin: its config and every variable ``worker_env``
    stripped, so the worker's ``os.environ`` ends up as the server's."""
    env = {k: environ[k] for k in sorted(secret_env_names(cfg, environ))}
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
    for policy in policies(cfg.triggers):
        for action in policy.actions:
            name = getattr(action, "secret_env", None)
            if name:
                yield name
