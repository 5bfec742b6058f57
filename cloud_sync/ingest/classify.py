"""Judge one received MQTT message: a typed device message to store, or a reason to quarantine.

Checks run in a fixed order, each with its own quarantine reason (``REASONS``): size,
topic, JSON, protocol version, field types, and that the payload's ``device_id`` is the
topic's device. Registration (unknown device, wrong fleet) needs the store and is judged
per batch in ``batch.py``. Pure functions: no I/O, never raise for bad input.

A valid message of a known minor takes a compiled reader (``fast_read``, msgspec, about
4x faster); anything it does not accept is read again by the protocol's own reader,
which gives the quarantine reason. Both readers build the same typed message.

JSON is read strictly: ``NaN``/``Infinity`` literals (not JSON, and refused by
PostgreSQL's ``jsonb``), numbers that overflow a float (``1e999`` would become infinity:
refused by ``jsonb``, stored by SQLite as non-JSON ``Infinity``) and documents nested
deeper than ``MAX_DEPTH`` (protocol messages are a few levels deep; a deeper one would
exhaust the stack of whatever walks it later, and ``json.loads`` itself raises
``RecursionError`` past about a thousand) are ``bad_json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cloud_sync.ingest.fast_read import MAX_DEPTH, fast_read
from edge_agent import protocol
from edge_agent.errors import ProtocolError

OVERSIZE, BAD_TOPIC, BAD_JSON, BAD_VERSION, BAD_FIELDS = (
    "oversize", "bad_topic", "bad_json", "bad_version", "bad_fields")
DEVICE_MISMATCH, UNKNOWN_DEVICE, FLEET_MISMATCH, STORE_ERROR = (
    "device_mismatch", "unknown_device", "fleet_mismatch", "store_error")
REASONS = {
    OVERSIZE: "payload over the protocol's size cap",
    BAD_TOPIC: "topic is not edgekit/<fleet>/<device>/<kind> with valid ids",
    BAD_JSON: "payload is not a UTF-8 JSON object",
    BAD_VERSION: "missing, malformed or unknown major protocol version",
    BAD_FIELDS: "a field is missing, unknown at this minor, or of the wrong type or range",
    DEVICE_MISMATCH: "payload device_id differs from the topic's device",
    UNKNOWN_DEVICE: "device not registered while registration is closed",
    FLEET_MISMATCH: "device registered in another fleet than the topic's",
    STORE_ERROR: "the database refused the row (e.g. a value longer than its column)",
}
DEVICE_KINDS = (protocol.TELEMETRY, protocol.SAMPLES, protocol.STATUS, protocol.CMD_RESULT)


@dataclass(frozen=True)
class Received:
    """One message as it came off the broker; ``mid``/``generation`` identify its PUBACK."""

    topic: str
    payload: bytes
    received_at: float
    mid: int = 0
    generation: int = 0
    qos: int = 1


@dataclass(frozen=True)
class Accepted:
    """A valid device message: where it came from and its decoded JSON document."""

    received: Received
    fleet: str
    device_id: str
    kind: str
    seq: int
    doc: dict[str, Any]
    message: Any
    unknown_fields: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Rejected:
    """A message to quarantine, with its reason (a key of ``REASONS``) and a short detail."""

    received: Received
    reason: str
    detail: str
    device_id: str | None = None


def classify(received: Received, compiled: bool = True) -> Accepted | Rejected:
    """Accepted, or Rejected with the first failed check's reason. ``compiled`` False
    reads every payload with the protocol's reader (``ingest.fast_paths``)."""
    if len(received.payload) > protocol.MAX_PAYLOAD_BYTES:
        return Rejected(received, OVERSIZE, f"{len(received.payload)} bytes > "
                        f"{protocol.MAX_PAYLOAD_BYTES}")
    try:
        fleet, device_id, kind = protocol.parse_topic(received.topic)
    except ProtocolError as exc:
        return Rejected(received, BAD_TOPIC, str(exc))
    if kind not in DEVICE_KINDS:
        return Rejected(received, BAD_TOPIC, f"kind {kind!r} is not sent by devices", device_id)
    return _judge_payload(received, fleet, device_id, kind, compiled)


def _judge_payload(received: Received, fleet: str, device_id: str, kind: str,
                   compiled: bool = True) -> Accepted | Rejected:
    fast = _fast(received.payload, kind) if compiled else None
    if fast is not None:
        doc, message = fast
        return _accept(received, fleet, device_id, kind, doc, message)
    try:
        doc = read_json(received.payload)
    except (UnicodeDecodeError, ValueError) as exc:
        return Rejected(received, BAD_JSON, str(exc), device_id)
    except RecursionError:
        return Rejected(received, BAD_JSON, f"nested deeper than {MAX_DEPTH} levels", device_id)
    if not isinstance(doc, dict):
        return Rejected(received, BAD_JSON, f"payload is a JSON {type(doc).__name__}, "
                        "not an object", device_id)
    try:
        protocol.read_version(doc)
    except ProtocolError as exc:
        return Rejected(received, BAD_VERSION, str(exc), device_id)
    try:
        message = protocol.MESSAGE_TYPES[kind].from_dict(doc)
    except ProtocolError as exc:
        return Rejected(received, BAD_FIELDS, str(exc), device_id)
    return _accept(received, fleet, device_id, kind, doc, message)


def _fast(payload: bytes, kind: str) -> tuple[dict[str, Any], Any] | None:
    """(plain JSON document, typed message) from the compiled reader, or None when the
    protocol's reader must judge the payload (see ``fast_read``)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    message = fast_read(kind, text)
    if message is None:
        return None
    try:
        return msgspec.json.decode(text), message
    except msgspec.DecodeError:  # e.g. an integer past 64 bits under an ``Any`` field
        return None


def _accept(received: Received, fleet: str, device_id: str, kind: str, doc: dict[str, Any],
            message: Any) -> Accepted | Rejected:
    if message.device_id != device_id:
        return Rejected(received, DEVICE_MISMATCH, f"payload device_id "
                        f"{message.device_id!r} on the topic of {device_id!r}", device_id)
    return Accepted(received, fleet, device_id, kind, message.seq, doc, message,
                    tuple(getattr(message, "unknown_fields", ()) or ()))


def read_json(payload: bytes) -> Any:
    """Strict JSON: ValueError for non-standard constants and for nesting past
    ``MAX_DEPTH``; RecursionError when even the parser gives up on the nesting."""
    doc = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant,
                     parse_float=_finite_float)
    if payload.count(b"[") + payload.count(b"{") > MAX_DEPTH and _depth(doc) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return doc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send null or a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]}{'...' if len(text) > 20 else ''} overflows a "
                         "float; send a finite number")
    return value


def _depth(doc: Any) -> int:
    """Nesting depth of a decoded document, without recursion (stops past ``MAX_DEPTH``)."""
    deepest, level = 0, [doc]
    while level and deepest <= MAX_DEPTH:
        deepest += 1
        level = [child for node in level for child in
                 (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, (dict, list))]
    return deepest
