"""A compiled reader of device messages (msgspec) for ingest's common case: a valid
message of a known minor version. It answers the typed protocol message or None; on
None, ``classify`` reads the payload with the protocol's own reader, which gives the
exact quarantine reason. So the fast path can only accept what the protocol's reader
accepts, and it builds the same objects:

1. the payload is decoded into a msgspec mirror of the message's record classes,
   generated from their field plans (``edge_agent.contracts.record.field_plan``):
   the same JSON keys, types (no bool as int, an int read as float, null only where
   the contract allows it) and required fields; any unknown field is refused (a
   newer minor, which allows them, takes the protocol's reader);
2. the mirror is turned into the protocol's dataclasses (same field names), set field
   by field: the mirror has checked every type, and ``Record.__post_init__`` only turns
   dicts into records, which the mirror already did;
3. the value checks of every field (``meta(check)``) and each record's ``problem()``
   run on the result, as the protocol's reader runs them.

Where the protocol reader bounds nesting (``MAX_DEPTH``), the mirror's types bound it
too, except under ``Any`` fields: a message kind with one defers payloads that may
nest deeper to the protocol's reader. ``tests/cloud_sync/ingest/test_fast_read.py``
checks both readers agree on every payload of the ingest test corpora.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any

import msgspec

from edge_agent import protocol
from edge_agent.contracts.record import Record, field_plan
from edge_agent.errors import ProtocolError

MAX_DEPTH = 64  # of nested objects/arrays in a payload (classify's bound too)
NONE = type(None)


def _scalar(types: tuple) -> Any:
    kinds = [t for t in types if t is not NONE]
    found = kinds[0]
    for more in kinds[1:]:
        found = found | more
    return found | None if NONE in types else found


def _type(shape: Any) -> Any:
    kind = shape.kind
    if kind == "scalar":
        return _scalar(shape.types)
    if kind == "any":
        return Any
    if kind == "optional":
        return _type(shape.inner) | None
    if kind == "list":
        return list[_type(shape.inner)]
    if kind == "dict":
        return dict[str, _type(shape.inner)]
    return _mirror(shape.record)


def _has_any(cls: type) -> bool:
    def walk(shape: Any) -> bool:
        if shape.kind == "any":
            return True
        if shape.kind == "record":
            return _has_any(shape.record)
        return shape.inner is not None and walk(shape.inner)
    return any(walk(shape) for _n, _k, shape, _r, _c in field_plan(cls))


def _default(cls: type, name: str) -> Any:
    field = cls.__dataclass_fields__[name]
    if field.default_factory is not dataclasses.MISSING:
        return msgspec.field(default_factory=field.default_factory)
    return field.default


@cache
def _mirror(cls: type) -> type:
    """A msgspec Struct with ``cls``'s JSON shape that refuses unknown fields."""
    fields: list[tuple] = []
    rename: dict[str, str] = {}
    for name, key, shape, required, _check in field_plan(cls):
        fields.append((name, _type(shape)) if required else
                      (name, _type(shape), _default(cls, name)))
        if key != name:
            rename[name] = key
    fields += [(key, Any, None) for key in sorted(cls.ENVELOPE)]
    return msgspec.defstruct(f"Fast{cls.__name__}", fields, kw_only=True,
                             forbid_unknown_fields=True, rename=rename or None)


def _identity(value: Any) -> Any:
    return value


def _converter(shape: Any) -> Any:
    """mirror value -> protocol value for one field shape."""
    if not shape.has_record:
        return _identity
    if shape.kind == "record":
        build = _builder(shape.record)
        return lambda v: v if isinstance(v, Record) else build(v)  # a default is a record
    inner = _converter(shape.inner)
    if shape.kind == "optional":
        return lambda v: None if v is None else inner(v)
    if shape.kind == "list":
        return lambda v: [inner(x) for x in v]
    return lambda v: {k: inner(x) for k, x in v.items()}


@cache
def _builder(cls: type) -> Any:
    """mirror struct -> an instance of the record class ``cls``."""
    plan = [(name, _converter(shape)) for name, _k, shape, _r, _c in field_plan(cls)]
    new = object.__new__

    def build(mirror: Any) -> Any:
        record = new(cls)
        record.__dict__.update({name: convert(getattr(mirror, name)) for name, convert in plan})
        return record
    return build


@cache
def _check_plan(cls: type) -> tuple[list, list, bool]:
    """(fields with a value check, fields holding records, whether ``problem`` is own)."""
    plan = field_plan(cls)
    return ([(name, check) for name, _k, _s, _r, check in plan if check is not None],
            [(name, shape) for name, _k, shape, _r, _c in plan if shape.has_record],
            cls.problem is not Record.problem)


def _checked(record: Record) -> bool:
    """Every field check and ``problem()`` of ``record`` and the records inside it pass."""
    checks, nested, own_problem = _check_plan(type(record))
    values = record.__dict__
    for name, check in checks:
        value = values[name]
        if value is not None and check(value):
            return False
    for name, shape in nested:
        if not _records_checked(shape, values[name]):
            return False
    return not own_problem or record.problem() is None


def _records_checked(shape: Any, value: Any) -> bool:
    if value is None:
        return True
    if shape.kind == "record":
        return _checked(value)
    if shape.kind == "optional":
        return _records_checked(shape.inner, value)
    values = value.values() if shape.kind == "dict" else value
    return all(_records_checked(shape.inner, v) for v in values)


@dataclasses.dataclass(frozen=True)
class _Reader:
    cls: type
    decoder: msgspec.json.Decoder
    has_any: bool

    def read(self, text: str) -> Any | None:
        if self.has_any and text.count("[") + text.count("{") > MAX_DEPTH:
            return None
        try:
            mirror = self.decoder.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        try:
            if protocol.read_version({"v": mirror.v}).minor > protocol.PROTOCOL_VERSION.minor:
                return None  # a newer minor may carry unknown fields: the lenient reader
        except ProtocolError:
            return None
        message = _builder(self.cls)(mirror)
        return message if _checked(message) else None


@cache
def reader(kind: str) -> _Reader:
    """The compiled reader of one message kind (a topic kind of ``protocol.KINDS``)."""
    cls = protocol.MESSAGE_TYPES[kind]
    return _Reader(cls, msgspec.json.Decoder(_mirror(cls)), _has_any(cls))


def fast_read(kind: str, text: str) -> Any | None:
    """The typed message in ``text`` (the payload decoded as UTF-8), or None when the
    protocol's own reader must judge it (invalid, newer minor, or deep under ``Any``)."""
    return reader(kind).read(text)
