"""edgekit's MQTT protocol: topics and versioned JSON messages, shared by device and cloud.

Topics (MQTT v5, QoS 1 throughout)::

    edgekit/<fleet>/<device>/telemetry    device -> cloud  periodic figures
    edgekit/<fleet>/<device>/samples      device -> cloud  selected inputs for retraining
    edgekit/<fleet>/<device>/status       device -> cloud  retained; last will says "offline"
    edgekit/<fleet>/<device>/cmd          cloud -> device  update / rollback / set-config / ping
    edgekit/<fleet>/<device>/cmd/result   device -> cloud  one answer per command

Every device message carries ``v`` (protocol version), ``device_id``, ``seq`` and
``ts`` (Unix seconds). ``seq`` is monotonic per device and per topic kind and
survives restarts, so the cloud deduplicates at-least-once deliveries by
``(device_id, kind, seq)`` and sees gaps. Payloads over ``MAX_PAYLOAD_BYTES``
are refused before parsing. Stdlib only.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

from edge_agent._check import field as get
from edge_agent._check import no_unknown, non_empty, non_negative, obj, one_of
from edge_agent.errors import ProtocolError

PROTOCOL_VERSION = 1
TOPIC_ROOT = "edgekit"
MAX_PAYLOAD_BYTES = 1 << 20
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

TELEMETRY, SAMPLES, STATUS, CMD, CMD_RESULT = "telemetry", "samples", "status", "cmd", "cmd/result"
KINDS = (TELEMETRY, SAMPLES, STATUS, CMD, CMD_RESULT)
RETAINED = frozenset({STATUS})
QOS = 1


def check_id(value: str, what: str) -> str:
    """A fleet or device id usable in a topic: letters, digits, '_', '.', '-' (max 64)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise ProtocolError(f"{what} {value!r} is not valid; use letters, digits, '_', '.', '-' "
                            "(at most 64, starting with a letter or digit)")
    return value


def topic(fleet: str, device: str, kind: str) -> str:
    """The topic of one device's message kind."""
    if kind not in KINDS:
        raise ProtocolError(f"unknown message kind {kind!r}; one of {', '.join(KINDS)}")
    return f"{TOPIC_ROOT}/{check_id(fleet, 'fleet')}/{check_id(device, 'device id')}/{kind}"


def subscription(kind: str, fleet: str = "+", device: str = "+") -> str:
    """A topic filter for one kind, e.g. every device's telemetry in every fleet."""
    fleet = fleet if fleet == "+" else check_id(fleet, "fleet")
    device = device if device == "+" else check_id(device, "device id")
    return f"{TOPIC_ROOT}/{fleet}/{device}/{kind}"


def parse_topic(name: str) -> tuple[str, str, str]:
    """(fleet, device, kind) of an edgekit topic, or ProtocolError."""
    parts = name.split("/")
    if len(parts) < 4 or parts[0] != TOPIC_ROOT:
        raise ProtocolError(
            f"topic {name!r} is not an edgekit topic ({TOPIC_ROOT}/<fleet>/<device>/<kind>)")
    kind = "/".join(parts[3:])
    if kind not in KINDS:
        raise ProtocolError(f"topic {name!r} has unknown kind {kind!r}")
    return check_id(parts[1], "fleet"), check_id(parts[2], "device id"), kind


def _loads(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD_BYTES} cap")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"payload is not UTF-8 JSON: {str(exc)[:80]}") from exc
    doc = obj(doc, "payload", ProtocolError)
    version = get(doc, "v", (int,), "", ProtocolError)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version} is not supported (expected "
                            f"{PROTOCOL_VERSION}); upgrade the side that is older")
    return doc


@dataclass
class Message:
    """Base of every message: a JSON object with a schema (``_SPEC``) and version ``v``."""

    KIND: ClassVar[str] = ""
    _SPEC: ClassVar[dict[str, tuple]] = {}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, with the protocol version."""
        return dict(asdict(self), v=PROTOCOL_VERSION)

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON, refused when over the payload cap."""
        data = json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode("utf-8")
        if len(data) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"{self.KIND} message of {len(data)} bytes is over the cap")
        return data

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Message:
        """Validate a decoded payload against ``_SPEC``; ProtocolError names the bad field."""
        no_unknown(doc, set(cls._SPEC) | {"v"}, "", ProtocolError)
        values = {}
        for f in fields(cls):
            types, check = cls._SPEC[f.name]
            has_default = f.default is not MISSING or f.default_factory is not MISSING
            default = _default(f) if has_default else ...  # ... = required
            values[f.name] = get(doc, f.name, types, "", ProtocolError, default, check)
        message = cls(**values)
        message.validate()
        return message

    @classmethod
    def from_json(cls, payload: bytes) -> Message:
        """Parse and validate a payload of this message kind."""
        return cls.from_dict(_loads(payload))

    def validate(self) -> None:
        """Cross-field checks beyond types; subclasses add their own."""


def _default(f: Any) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


_STR = ((str,), non_empty)
_INT = ((int,), non_negative)
_OBJ = ((dict,), None)
_DEVICE = {"device_id": ((str,), lambda v: None if _ID.match(v) else "is not a valid device id"),
           "seq": _INT, "ts": ((float,), non_negative)}


@dataclass
class Telemetry(Message):
    """Periodic figures of one device over one window (see docs in README for each block)."""

    KIND: ClassVar[str] = TELEMETRY
    _SPEC: ClassVar[dict[str, tuple]] = dict(
        _DEVICE, model=_OBJ, window_s=((float,), non_negative), inferences=_INT, errors=_INT,
        latency_ms=_OBJ, confidence=_OBJ, class_counts=_OBJ, input_hist=((dict, type(None)), None),
        outbox=_OBJ, system=_OBJ)
    device_id: str
    seq: int
    ts: float
    model: dict[str, Any]
    window_s: float
    inferences: int
    errors: int
    latency_ms: dict[str, Any] = field(default_factory=dict)
    confidence: dict[str, Any] = field(default_factory=dict)
    class_counts: dict[str, Any] = field(default_factory=dict)
    input_hist: dict[str, Any] | None = None
    outbox: dict[str, Any] = field(default_factory=dict)
    system: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for key, value in self.class_counts.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ProtocolError(f"field 'class_counts.{key}' must be a count >= 0")


@dataclass
class Sample(Message):
    """One input kept for retraining, with why it was kept and what the model said."""

    KIND: ClassVar[str] = SAMPLES
    _SPEC: ClassVar[dict[str, tuple]] = dict(
        _DEVICE, model=_OBJ, reason=((str,), one_of("low_confidence", "out_of_range", "requested")),
        prediction=_OBJ, input=_OBJ)
    device_id: str
    seq: int
    ts: float
    model: dict[str, Any]
    reason: str
    prediction: dict[str, Any]
    input: dict[str, Any]

    def validate(self) -> None:
        spec = self.input
        for key, types in (("dtype", (str,)), ("shape", (list,)), ("data", (str,))):
            get(spec, key, types, "input", ProtocolError)
        try:
            base64.b64decode(spec["data"], validate=True)
        except ValueError as exc:
            raise ProtocolError("field 'input.data' must be base64") from exc


@dataclass
class Status(Message):
    """The device's retained state; the broker publishes ``state: offline`` as its last will."""

    KIND: ClassVar[str] = STATUS
    _SPEC: ClassVar[dict[str, tuple]] = dict(
        _DEVICE, state=((str,), one_of("online", "offline", "updating", "degraded")),
        model=((dict, type(None)), None), agent_version=((str,), None), detail=_OBJ)
    device_id: str
    seq: int
    ts: float
    state: str
    model: dict[str, Any] | None = None
    agent_version: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


COMMAND_TYPES = ("update", "rollback", "set-config", "ping")


def _check_update(args: dict[str, Any]) -> None:
    url = get(args, "url", (str,), "args", ProtocolError)
    if not url.startswith(("http://", "https://")):
        raise ProtocolError("field 'args.url' must be an http:// or https:// URL")
    get(args, "sha256", (str,), "args", ProtocolError,
        check=lambda v: None if re.match(r"^[0-9a-f]{64}$", v) else "must be 64 lowercase hex")
    get(args, "version", (str,), "args", ProtocolError, check=non_empty)
    get(args, "size", (int,), "args", ProtocolError, default=None, check=non_negative)
    no_unknown(args, {"url", "sha256", "version", "size", "signature"}, "args", ProtocolError)


def _check_set_config(args: dict[str, Any]) -> None:
    no_unknown(args, {"telemetry_interval_s", "sample_rate_per_min", "sample_max_bytes",
                      "low_confidence"}, "args", ProtocolError)
    if not args:
        raise ProtocolError("set-config needs at least one setting in 'args'")
    for key in args:
        get(args, key, (float,), "args", ProtocolError, check=non_negative)


def _check_no_args(args: dict[str, Any]) -> None:
    no_unknown(args, set(), "args", ProtocolError)


COMMAND_ARG_CHECKS = {"update": _check_update, "rollback": _check_no_args,
                      "set-config": _check_set_config, "ping": _check_no_args}


@dataclass
class Command(Message):
    """A cloud -> device command; ``cmd_id`` ties it to its result."""

    KIND: ClassVar[str] = CMD
    _SPEC: ClassVar[dict[str, tuple]] = dict(
        cmd_id=_STR, type=((str,), one_of(*COMMAND_TYPES)), args=_OBJ, ts=((float,), non_negative))
    cmd_id: str
    type: str
    ts: float
    args: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        COMMAND_ARG_CHECKS[self.type](self.args)


@dataclass
class CommandResult(Message):
    """A device's answer to one command: ok, or the error that stopped it."""

    KIND: ClassVar[str] = CMD_RESULT
    _SPEC: ClassVar[dict[str, tuple]] = dict(
        _DEVICE, cmd_id=((str,), None), type=((str,), None), ok=((bool,), None),
        error=((str, type(None)), None), detail=_OBJ)
    device_id: str
    seq: int
    ts: float
    cmd_id: str
    type: str
    ok: bool
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.KIND: cls for cls in (Telemetry, Sample, Status, Command, CommandResult)
}


def decode(kind: str, payload: bytes) -> Message:
    """Parse a payload of the given kind (as from ``parse_topic``)."""
    if kind not in MESSAGE_TYPES:
        raise ProtocolError(f"unknown message kind {kind!r}")
    return MESSAGE_TYPES[kind].from_json(payload)
