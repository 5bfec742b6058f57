"""edgekit's MQTT protocol: topics and versioned JSON messages, shared by device and cloud.

Topics (MQTT v5, QoS 1 throughout)::

    edgekit/<fleet>/<device>/telemetry    device -> cloud  periodic figures
    edgekit/<fleet>/<device>/samples      device -> cloud  selected inputs for retraining
    edgekit/<fleet>/<device>/status       device -> cloud  retained; last will says "offline"
    edgekit/<fleet>/<device>/cmd          cloud -> device  update / rollback / set-config / ping
    edgekit/<fleet>/<device>/cmd/result   device -> cloud  one answer per command

Every message carries ``v``, the protocol version ``"MAJOR.MINOR"`` (now
``PROTOCOL_VERSION`` = ``"1.3"``; the integer ``1`` of the first release reads as
``"1.0"``). Every device message also carries ``device_id``, ``seq``, ``ts``
(Unix seconds) and, since 1.2, ``incarnation``. ``seq`` is monotonic per device
and per topic kind and survives restarts as long as the device's outbox file
does; ``incarnation`` is the random id of that file (``edge_agent.outbox``), new
when the file is (a lost outbox, a re-imaged device), when every seq starts at 1
again. So the cloud deduplicates at-least-once deliveries by
``(device_id, incarnation, kind, seq)``, sees gaps per incarnation, and takes a
device's state from its newest incarnation. A message without the field (1.0,
1.1) reads as incarnation ``""``. Payloads over ``MAX_PAYLOAD_BYTES`` are refused
before parsing. Stdlib only.

Versions: a reader refuses an unknown major with one line. It reads a newer
minor leniently: unknown fields (at any depth, command arguments included) are
skipped; their dotted paths are on the parsed message's ``unknown_fields`` and
counted process-wide in ``edge_agent.contracts.unknown_field_counts()`` (keys
``"<kind>:<path>"``, e.g. ``"telemetry:system.gpu_c"``). A message of this
minor or an older one is read strictly (an unknown field is an error), and
writers are strict: ``to_json`` checks its own output with a strict read. Field
shapes are the typed blocks of ``edge_agent.contracts.telemetry``; docs/protocol.md
shows one example of each message, generated from this code.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from edge_agent._check import non_empty, non_negative, obj, one_of
from edge_agent.contracts.record import Reading, Record, join_path, meta
from edge_agent.contracts.telemetry import (
    ConfidenceHist,
    DetectionWindow,
    EncodedInput,
    InputHist,
    LatencyMs,
    ModelRef,
    ModelState,
    OutboxFigures,
    Prediction,
    SampleDetection,
    SystemFigures,
    ValueWindow,
)
from edge_agent.contracts.version import Version, check_readable, parse_version
from edge_agent.contracts.vocab import QOS  # noqa: F401  (re-exported: one QoS for all topics)
from edge_agent.errors import ProtocolError

PROTOCOL_VERSION = Version(1, 3)
TOPIC_ROOT = "edgekit"
MAX_PAYLOAD_BYTES = 1 << 20
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_INCARNATION = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
LEGACY_INCARNATION = ""  # what a message without ``incarnation`` (before 1.2) belongs to

TELEMETRY, SAMPLES, STATUS, CMD, CMD_RESULT = "telemetry", "samples", "status", "cmd", "cmd/result"
KINDS = (TELEMETRY, SAMPLES, STATUS, CMD, CMD_RESULT)
RETAINED = frozenset({STATUS})


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
    return obj(doc, "payload", ProtocolError)


def read_version(doc: dict[str, Any]) -> Version:
    """The ``v`` of a decoded payload; ProtocolError for a missing, malformed or unknown major."""
    if "v" not in doc:
        raise ProtocolError("missing field 'v' (the protocol version, e.g. \"1.1\")")
    version = parse_version(doc["v"], "v", ProtocolError)
    check_readable(version, PROTOCOL_VERSION, "protocol version",
                   "upgrade the side that is older", ProtocolError)
    return version


@dataclass
class Message(Record):
    """Base of every message: a typed JSON object plus the protocol version ``v``."""

    KIND: ClassVar[str] = ""
    ERROR: ClassVar[type[Exception]] = ProtocolError
    ENVELOPE: ClassVar[frozenset] = frozenset({"v"})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, led by the protocol version."""
        return {"v": str(PROTOCOL_VERSION), **super().to_dict()}

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON, checked by a strict read and refused when over the payload cap."""
        doc = self.to_dict()
        type(self).from_dict(doc)  # writers are strict: what goes out must read back
        data = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
        if len(data) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"{self.KIND} message of {len(data)} bytes is over the cap")
        return data

    @classmethod
    def from_dict(cls, doc: Any, where: str = "", error: type[Exception] | None = None,
                  lenient: bool = False) -> Any:
        """Validate a decoded payload; a newer minor ``v`` is read leniently (see module doc)."""
        doc = obj(doc, "payload", ProtocolError)
        newer = read_version(doc).minor > PROTOCOL_VERSION.minor
        return super().from_dict(doc, where, error, lenient or newer)

    @classmethod
    def from_json(cls, payload: bytes) -> Any:
        """Parse and validate a payload of this message kind."""
        return cls.from_dict(_loads(payload))


def _device_id(value: str) -> str | None:
    return None if _ID.match(value) else "is not a valid device id"


def _sha256(value: str) -> str | None:
    return None if re.match(r"^[0-9a-f]{64}$", value) else "must be 64 lowercase hex"


def _http_url(value: str) -> str | None:
    return None if value.startswith(("http://", "https://")) else \
        "must be an http:// or https:// URL"


def _incarnation(value: str) -> str | None:
    return None if value == LEGACY_INCARNATION or _INCARNATION.match(value) else \
        "must be 1-32 letters, digits, '_' or '-' (or empty)"


def incarnation_field() -> Any:
    """The ``incarnation`` field of a device message: the sender's outbox id (1.2; before
    that absent, read as ``""``). Declared last in each message, as it has a default."""
    return field(default=LEGACY_INCARNATION, metadata=meta(_incarnation))


@dataclass
class DeviceMessage(Message):
    """A device -> cloud message: who sent it, its per-kind ``seq`` and when (Unix seconds).

    Every kind also ends with ``incarnation`` (``incarnation_field()``): the random id of
    the outbox whose counters gave ``seq``; ``seq`` is unique per (device, incarnation, kind).
    """

    device_id: str = field(metadata=meta(_device_id))
    seq: int = field(metadata=meta(non_negative))
    ts: float = field(metadata=meta(non_negative))


@dataclass
class Telemetry(DeviceMessage):
    """Periodic figures of one device over one window (``edge_agent.contracts.telemetry``)."""

    KIND: ClassVar[str] = TELEMETRY
    CONTRACT: ClassVar[str] = TELEMETRY
    model: ModelState
    window_s: float = field(metadata=meta(non_negative))
    inferences: int = field(metadata=meta(non_negative))
    errors: int = field(metadata=meta(non_negative))
    latency_ms: LatencyMs = field(default_factory=LatencyMs)
    confidence: ConfidenceHist | None = None
    class_counts: dict[str, int] = field(default_factory=dict)
    """Predicted class index (as a string) -> how many inputs got it in the window."""
    input_hist: InputHist | None = None
    detection: DetectionWindow | None = None
    """Detectors (1.3): detections per frame, scores, classes, box areas, empty frames."""
    values: list[ValueWindow] = field(default_factory=list)
    """Generic models (1.3): a value histogram per named output."""
    outbox: OutboxFigures = field(default_factory=OutboxFigures)
    system: SystemFigures = field(default_factory=SystemFigures)
    incarnation: str = incarnation_field()

    def problem(self) -> tuple[str, str] | None:
        bad = next((k for k, v in self.class_counts.items() if v < 0), None)
        return None if bad is None else (f"class_counts.{bad}", "must be a count >= 0")


SAMPLE_REASONS = ("low_confidence", "out_of_range", "requested")


@dataclass
class Sample(DeviceMessage):
    """One input kept for retraining, with why it was kept and what the model said:
    a classifier's ``prediction``; a detector's ``detections`` (1.3; boxes in the pixels of
    ``input``), so a labelling tool can start from them. A generic model's sample has
    neither."""

    KIND: ClassVar[str] = SAMPLES
    CONTRACT: ClassVar[str] = SAMPLES
    model: ModelRef
    reason: str = field(metadata=meta(one_of(*SAMPLE_REASONS)))
    input: EncodedInput
    prediction: Prediction | None = None
    detections: list[SampleDetection] | None = None
    incarnation: str = incarnation_field()


STATES = ("online", "offline", "updating", "degraded")


@dataclass
class Status(DeviceMessage):
    """The device's retained state; the broker publishes ``state: offline`` as its last will.

    ``reason`` says why in a word or two (e.g. ``stopped``, ``connection_lost``, a
    degraded cause); ``profile`` is the hardware profile the device runs as (the
    cloud registers it); ``detail`` carries free-form figures.
    """

    KIND: ClassVar[str] = STATUS
    CONTRACT: ClassVar[str] = STATUS
    state: str = field(metadata=meta(one_of(*STATES)))
    model: ModelRef | None = None
    agent_version: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    profile: str = ""
    incarnation: str = incarnation_field()


class _Args(Record):
    ERROR: ClassVar[type[Exception]] = ProtocolError


@dataclass
class UpdateArgs(_Args):
    """``update``: fetch the bundle at ``url`` (pinned by ``sha256``), install ``version``."""

    url: str = field(metadata=meta(_http_url))
    sha256: str = field(metadata=meta(_sha256))
    version: str = field(metadata=meta(non_empty))
    size: int | None = field(default=None, metadata=meta(non_negative))


@dataclass
class SetConfigArgs(_Args):
    """``set-config``: change telemetry and sampling settings at run time (at least one)."""

    telemetry_interval_s: float | None = field(default=None, metadata=meta(non_negative))
    sample_rate_per_min: float | None = field(default=None, metadata=meta(non_negative))
    sample_max_bytes: float | None = field(default=None, metadata=meta(non_negative))
    low_confidence: float | None = field(default=None, metadata=meta(non_negative))

    def problem(self) -> tuple[str, str] | None:
        if all(v is None for v in self.to_dict().values()):
            return "", "needs at least one setting"
        return None


@dataclass
class RollbackArgs(_Args):
    """``rollback``: go back to the kept previous model, leaving ``from_version`` (since
    1.2). A device that runs any other version refuses it (so a late or replayed rollback
    cannot undo a newer update). Without the field (1.0, 1.1, commands written by hand)
    the device rolls back from whatever it runs, as before."""

    from_version: str | None = field(default=None, metadata=meta(non_empty))


@dataclass
class NoArgs(_Args):
    """``ping`` takes no arguments."""


COMMAND_ARGS: dict[str, type[Record]] = {"update": UpdateArgs, "rollback": RollbackArgs,
                                         "set-config": SetConfigArgs, "ping": NoArgs}
COMMAND_TYPES = tuple(COMMAND_ARGS)


@dataclass
class Command(Message):
    """A cloud -> device command; ``cmd_id`` ties it to its result.

    ``args`` is a plain dict checked against the type's args record (``COMMAND_ARGS``);
    ``typed_args()`` gives that record. ``expires_at`` (Unix seconds, optional): a
    device must not start the command at or after that time.
    """

    KIND: ClassVar[str] = CMD
    CONTRACT: ClassVar[str] = CMD
    cmd_id: str = field(metadata=meta(non_empty))
    type: str = field(metadata=meta(one_of(*COMMAND_TYPES)))
    ts: float = field(metadata=meta(non_negative))
    args: dict[str, Any] = field(default_factory=dict)
    expires_at: float | None = field(default=None, metadata=meta(non_negative))

    @classmethod
    def read(cls, doc: Any, where: str, reading: Reading) -> Any:
        """Read the command, then its args by type (unknown args follow the same rules)."""
        cmd = super().read(doc, where, reading)
        typed = COMMAND_ARGS[cmd.type].read(cmd.args, join_path(where, "args"), reading)
        cmd.args = {k: v for k, v in typed.to_dict().items() if v is not None}
        return cmd

    def typed_args(self) -> Any:
        """The args as their typed record (``UpdateArgs``, ``SetConfigArgs``, ``NoArgs``)."""
        return COMMAND_ARGS[self.type].from_dict(self.args, "args")

    def expired(self, now: float | None = None) -> bool:
        """True when ``expires_at`` is set and ``now`` (default: the clock) has reached it."""
        return self.expires_at is not None and (time.time() if now is None else now) \
            >= self.expires_at


@dataclass
class CommandResult(DeviceMessage):
    """A device's answer to one command: ok, or the error that stopped it."""

    KIND: ClassVar[str] = CMD_RESULT
    CONTRACT: ClassVar[str] = CMD_RESULT
    cmd_id: str
    type: str
    ok: bool
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    incarnation: str = incarnation_field()


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.KIND: cls for cls in (Telemetry, Sample, Status, Command, CommandResult)
}


def decode(kind: str, payload: bytes) -> Message:
    """Parse a payload of the given kind (as from ``parse_topic``)."""
    if kind not in MESSAGE_TYPES:
        raise ProtocolError(f"unknown message kind {kind!r}")
    return MESSAGE_TYPES[kind].from_json(payload)
