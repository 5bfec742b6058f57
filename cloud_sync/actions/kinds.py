"""What each action kind does; a registry (``ACTION_KINDS``), one function per kind.

Each runner gets an ``ActionContext`` and returns on success or raises
``ActionFailed`` with a one-line reason (the outbox retries it with backoff).

- ``command``: the program runs (no shell) with ``EDGEKIT_TRIGGER_ID``,
  ``EDGEKIT_FLEET``, ``EDGEKIT_MODEL``, ``EDGEKIT_VERSION``, ``EDGEKIT_SAMPLES``
  (the .npz export) and ``EDGEKIT_EVIDENCE`` (the evidence JSON file) in its
  environment; exit status 0 is success. Of the cloud's own environment it gets only
  ``PATH``, ``HOME``, ``LANG`` and the names its policy lists in ``env_pass``: never the
  API token, the MQTT password or the artifact URL secret.
- ``webhook``: POST of the trigger as JSON with ``X-Edgekit-Signature:
  sha256=<hex HMAC-SHA256 of the exact body with the secret>`` and
  ``Idempotency-Key: <trigger id>-<action index>``; any 2xx is success.
- ``mqtt``: the same JSON published at QoS 1 on ``edgekit/<fleet>/_events/trigger``
  with the cloud's service login.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cloud_sync.config import CloudConfig
from cloud_sync.errors import CloudError
from cloud_sync.store.engine import redact_url
from edge_agent import protocol

SIGNATURE_HEADER = "X-Edgekit-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# What a command action always gets of the cloud's environment (beyond its policy's env_pass).
PASSED_ENV = ("PATH", "HOME", "LANG")


class ActionFailed(CloudError):
    """One attempt of an action failed (retried until its attempts run out)."""


@dataclass(frozen=True)
class ActionContext:
    """One attempt: the trigger (its API document), the action's config and index."""

    trigger: dict[str, Any]
    config: dict[str, Any]
    index: int
    cfg: CloudConfig

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of this action."""
        return f"{self.trigger['id']}-{self.index}"

    def body(self) -> bytes:
        """The trigger as compact JSON (what is signed and sent)."""
        doc = {"event": "trigger", "idempotency_key": self.idempotency_key, **self.trigger}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: ``sha256=<hex HMAC-SHA256 of body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def command_env(trigger: dict[str, Any], env_pass: Iterable[str] = (),
                environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The command's whole environment: ``PATH``, ``HOME``, ``LANG`` and the names in
    ``env_pass`` where ``environ`` sets them, then the trigger's ``EDGEKIT_*`` variables.
    Nothing else of the cloud's environment (it holds secrets) reaches the child."""
    env = {name: environ[name] for name in (*PASSED_ENV, *env_pass) if name in environ}
    env.update({"EDGEKIT_TRIGGER_ID": str(trigger["id"]), "EDGEKIT_FLEET": trigger["fleet"],
                "EDGEKIT_MODEL": trigger["model"], "EDGEKIT_VERSION": trigger["version"],
                "EDGEKIT_SAMPLES": trigger.get("samples_export") or "",
                "EDGEKIT_EVIDENCE": trigger.get("evidence_file") or ""})
    return env


def run_command(ctx: ActionContext) -> None:
    """Run the configured program with the trigger in its (allow-listed) environment."""
    env = command_env(ctx.trigger, ctx.config.get("env_pass") or ())
    try:
        done = subprocess.run(list(ctx.config["command"]), env=env, capture_output=True,
                              text=True, timeout=ctx.config.get("timeout_s", 600.0), check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ActionFailed(f"command {ctx.config['command'][0]!r}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or [""]
        raise ActionFailed(f"command exited with {done.returncode}: {tail[0][:200]}")


def _secret(config: dict[str, Any]) -> str | None:
    if config.get("secret"):
        return config["secret"]
    name = config.get("secret_env")
    if name and not os.environ.get(name):
        raise ActionFailed(f"webhook secret variable {name} is not set")
    return os.environ.get(name) if name else None


def post_webhook(ctx: ActionContext) -> None:
    """POST the signed trigger JSON."""
    import httpx

    body = ctx.body()
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: ctx.idempotency_key}
    secret = _secret(ctx.config)
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    try:
        response = httpx.post(ctx.config["url"], content=body, headers=headers,
                              timeout=ctx.config.get("timeout_s", 10.0))
    except httpx.HTTPError as exc:  # the URL's password stays out of logs and the API
        raise ActionFailed(redact_url(f"webhook {ctx.config['url']}: {exc}")) from None
    if not 200 <= response.status_code < 300:
        raise ActionFailed(f"webhook {redact_url(ctx.config['url'])} answered HTTP "
                           f"{response.status_code}")


def event_topic(fleet: str) -> str:
    """``edgekit/<fleet>/_events/trigger``."""
    return f"{protocol.TOPIC_ROOT}/{fleet}/_events/trigger"


def publish_event(ctx: ActionContext) -> None:
    """Publish the trigger at QoS 1 with the cloud's broker login."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from cloud_sync.ingest.mqtt import broker_for

    broker = broker_for(ctx.cfg, os.environ)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"edgekit-controller-{ctx.idempotency_key}")
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if (context := broker.ssl_context()) is not None:
        client.tls_set_context(context)
    timeout = ctx.config.get("timeout_s", 10.0)
    try:
        client.connect(broker.host, broker.port, keepalive=30)
        client.loop_start()
        info = client.publish(event_topic(ctx.trigger["fleet"]), ctx.body(), qos=1)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise ActionFailed(f"MQTT event not acknowledged within {timeout:g} s")
    except (OSError, ValueError, RuntimeError) as exc:
        raise ActionFailed(f"MQTT event to {broker.host}:{broker.port}: {exc}") from None
    finally:
        client.disconnect()
        client.loop_stop()


ACTION_KINDS: dict[str, Callable[[ActionContext], None]] = {
    "command": run_command,
    "webhook": post_webhook,
    "mqtt": publish_event,
}
