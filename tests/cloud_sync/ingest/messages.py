"""Valid and invalid device payloads for the ingest tests, built with the protocol's classes."""

from __future__ import annotations

import json

from edge_agent import protocol as p
from edge_agent.contracts.examples import example_messages


def telemetry(device: str, seq: int, **over) -> bytes:
    """A valid telemetry payload of ``device`` with ``seq``."""
    msg = example_messages()["telemetry"]
    msg.device_id, msg.seq = device, seq
    doc = {**msg.to_dict(), **over}
    return json.dumps(doc).encode()


def status(device: str, seq: int, state: str = "online", **over) -> bytes:
    """A valid status payload (``over``: other fields, e.g. ``incarnation``)."""
    msg = example_messages()["status"]
    msg.device_id, msg.seq, msg.state = device, seq, state
    for name, value in over.items():
        setattr(msg, name, value)
    return msg.to_json()


def sample(device: str, seq: int, **over) -> bytes:
    """A valid sample payload (``over``: other fields, e.g. ``incarnation``)."""
    msg = example_messages()["samples"]
    msg.device_id, msg.seq = device, seq
    for name, value in over.items():
        setattr(msg, name, value)
    return msg.to_json()


def topic(device: str, kind: str = p.TELEMETRY, fleet: str = "lab") -> str:
    """The device's topic of ``kind``."""
    return p.topic(fleet, device, kind)


def malformed(device: str) -> dict[str, tuple[str, bytes]]:
    """One bad message per quarantine reason that needs no store: reason -> (topic, payload)."""
    return {
        "bad_json": (topic(device), b"{not json"),
        "bad_version": (topic(device), telemetry(device, 1, v="9.0")),
        "bad_fields": (topic(device), telemetry(device, 1, inferences="many")),
        "device_mismatch": (topic(device), telemetry("someone-else", 1)),
        "oversize": (topic(device), b"{" + b" " * p.MAX_PAYLOAD_BYTES + b"}"),
        "bad_topic": ("edgekit/lab/bad id!/telemetry", telemetry(device, 1)),
    }
