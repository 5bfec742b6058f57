"""The MQTT commands of a rollout: deterministic ``cmd_id``s (a resend after a restart is
deduplicated by the agent's command journal), their JSON, and publishing them at QoS 1
with the cloud's service login once the step's transaction has committed."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from cloud_sync.config import CloudConfig
from edge_agent import protocol

log = logging.getLogger(__name__)
RESEND_S = 15.0  # an unanswered command is published again this often (and after a restart)
_last_sent: dict[str, float] = {}  # cmd_id -> when this process last published it (pruned)
_lock = threading.Lock()


def cmd_id(rollout_id: int, device_id: str, phase: str) -> str:
    """``ro<id>-<phase>-<hash of device>``: the same for every send of one command."""
    digest = hashlib.sha256(device_id.encode()).hexdigest()[:16]
    return f"ro{rollout_id}-{phase}-{digest}"


@dataclass(frozen=True)
class Outgoing:
    """One command to publish on ``edgekit/<fleet>/<device>/cmd``."""

    fleet: str
    device_id: str
    doc: dict[str, Any]

    @property
    def cmd_id(self) -> str:
        """The command's id."""
        return self.doc["cmd_id"]


def update_doc(cid: str, url: str, sha256: str, version: str, size: int, sent_at: float,
               ttl_s: float) -> dict[str, Any]:
    """An ``update`` command that expires ``ttl_s`` after it was first sent."""
    return {"v": str(protocol.PROTOCOL_VERSION), "cmd_id": cid, "type": "update", "ts": sent_at,
            "expires_at": sent_at + ttl_s,
            "args": {"url": url, "sha256": sha256, "version": version, "size": size}}


def rollback_doc(cid: str, sent_at: float, ttl_s: float, from_version: str) -> dict[str, Any]:
    """A ``rollback`` command that leaves ``from_version`` (the rollout's version): an agent
    running any other version refuses it."""
    return {"v": str(protocol.PROTOCOL_VERSION), "cmd_id": cid, "type": "rollback", "ts": sent_at,
            "expires_at": sent_at + ttl_s, "args": {"from_version": from_version}}


def prune(now: float) -> int:
    """Forget sends outside the last ``RESEND_S`` (``due`` reads them exactly as if never
    sent), so the map holds only the commands of the last few seconds however many
    rollouts and devices have come and gone; returns how many were dropped. A send "in
    the future" (the clock stepped back) is dropped too: that command is due again."""
    with _lock:
        stale = [cid for cid, at in _last_sent.items() if not 0 <= now - at < RESEND_S]
        for cid in stale:
            del _last_sent[cid]
    return len(stale)


def due(cid: str, now: float) -> bool:
    """True when ``cid`` was not published by this process in the last ``RESEND_S``."""
    with _lock:
        return now - _last_sent.get(cid, float("-inf")) >= RESEND_S


def publish(cfg: CloudConfig, outgoing: list[Outgoing], now: float,
            timeout_s: float = 10.0) -> int:
    """Publish every command at QoS 1; returns how many the broker acknowledged. Called
    every controller step (with or without commands): the resend map is pruned first."""
    prune(now)
    if not outgoing:
        return 0
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from cloud_sync.ingest.mqtt import broker_for

    broker = broker_for(cfg, os.environ)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"edgekit-rollouts-{os.getpid()}")
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if (context := broker.ssl_context()) is not None:
        client.tls_set_context(context)
    sent = 0
    try:
        client.max_inflight_messages_set(1000)  # the broker's receive maximum still applies
        client.connect(broker.host, broker.port, keepalive=30)
        client.loop_start()
        pending = [(out, client.publish(protocol.topic(out.fleet, out.device_id, protocol.CMD),
                                        json.dumps(out.doc), qos=1)) for out in outgoing]
        deadline = time.monotonic() + timeout_s  # all queued first: one wait, not one each
        for out, info in pending:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if info.is_published():
                sent += 1
                with _lock:
                    _last_sent[out.cmd_id] = now
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("rollout commands to %s:%d: %s", broker.host, broker.port, exc)
    finally:
        client.disconnect()
        client.loop_stop()
    return sent
