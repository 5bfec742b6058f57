"""Typed JSON records: dataclasses that read themselves from JSON and write plain JSON.

A record is a dataclass whose field annotations are its JSON shape: ``str``,
``int``, ``float``, ``bool``, ``Any``, another record class, ``list[X]``,
``dict[str, X]`` and ``X | None``. Annotations are read as text (every contract
module uses ``from __future__ import annotations``), so this runs on Python 3.9.
A field may add ``metadata=meta(check, key=...)``: a value check (value ->
problem text or None) and its JSON key where that is not a Python name (e.g.
``class``); a record may add cross-field checks in ``problem()``.

Reading (``from_dict``) raises the record's error family (``ProtocolError``,
``BundleError``, ...) with one line that names the dotted path of the bad field.
An unknown field is an error, unless the reader is lenient (the document carries
a newer minor version than this code knows): then it is skipped, its dotted path
lands in the parsed record's ``unknown_fields`` and in the process-wide count
that ``unknown_field_counts()`` returns (bounded: the first ``MAX_COUNTED`` distinct
fields are counted by name, later ones as ``"other"``, so a sender inventing keys
cannot grow it). Writing (``to_dict``) is plain JSON;
writers check what they write with a strict read.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from edge_agent._check import is_json_type, obj, type_names

_SCALARS = {"str": (str,), "int": (int,), "float": (float,), "bool": (bool,)}
_counts: Counter = Counter()
_counts_lock = threading.Lock()
MAX_COUNTED = 100  # distinct unknown fields counted by name; the rest count as OTHER
OTHER = "other"
KEY_CHARS = 200  # a counted name is cut to this many characters


def unknown_field_counts() -> dict[str, int]:
    """How often each unknown field was ignored in this process, as ``"<contract>:<path>"``
    (at most ``MAX_COUNTED`` of them, the fields met later summed as ``"other"``)."""
    with _counts_lock:
        return dict(_counts)


def reset_unknown_field_counts() -> None:
    """Start counting ignored unknown fields from zero (tests, metrics exporters)."""
    with _counts_lock:
        _counts.clear()


def count_unknown(contract: str, paths: tuple[str, ...]) -> None:
    """Add one ignored occurrence of each path to the process-wide count."""
    if not paths:
        return
    with _counts_lock:
        for key in (f"{contract}:{path}"[:KEY_CHARS] for path in paths):
            if key not in _counts and len(_counts) - (OTHER in _counts) >= MAX_COUNTED:
                key = OTHER
            _counts[key] += 1


def meta(check: Callable[[Any], str | None] | None = None, key: str | None = None) -> dict:
    """A record field's metadata: a value ``check`` and/or its JSON ``key``.

    Use as ``field(default=..., metadata=meta(non_negative))``.
    """
    found: dict[str, Any] = {}
    if check is not None:
        found["check"] = check
    if key is not None:
        found["key"] = key
    return found


@dataclass(frozen=True)
class _Shape:
    kind: str  # scalar | any | optional | list | dict | record
    types: tuple = ()
    inner: _Shape | None = None
    record: type | None = None
    has_record: bool = dataclasses.field(init=False, default=False)
    scalar_list: bool = dataclasses.field(init=False, default=False)  # list of plain scalars

    def __post_init__(self) -> None:  # computed once: reads are the hot path of ingest
        inner = self.inner
        object.__setattr__(self, "has_record", self.kind == "record" or (
            inner is not None and inner.has_record))
        object.__setattr__(self, "scalar_list", self.kind == "list" and inner is not None
                           and inner.kind == "scalar")


def _split_union(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if ch == "|" and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()]


def _parse(text: str, namespace: dict[str, Any]) -> _Shape:
    text = text.strip()
    parts = _split_union(text)
    if len(parts) == 2 and "None" in parts:
        inner = _parse(parts[0] if parts[1] == "None" else parts[1], namespace)
        if inner.kind == "scalar":  # so errors say "a number or null"
            return _Shape("scalar", types=(*inner.types, type(None)))
        return _Shape("optional", inner=inner)
    if len(parts) > 1:
        raise TypeError(f"record fields support only 'X | None' unions, not {text!r}")
    if text in _SCALARS:
        return _Shape("scalar", types=_SCALARS[text])
    if text == "Any":
        return _Shape("any")
    if text.startswith("list[") and text.endswith("]"):
        return _Shape("list", inner=_parse(text[5:-1], namespace))
    if text.startswith("dict[str,") and text.endswith("]"):
        return _Shape("dict", inner=_parse(text[9:-1], namespace))
    found = namespace.get(text)
    if isinstance(found, type) and issubclass(found, Record):
        return _Shape("record", record=found)
    raise TypeError(f"record field type {text!r} is not supported")


_FIELDS: dict[type, list[tuple[dataclasses.Field, str, _Shape]]] = {}


def _fields(cls: type) -> list[tuple[dataclasses.Field, str, _Shape]]:
    """(field, JSON key, shape) of a record class, parsed once."""
    if cls not in _FIELDS:
        namespace = vars(sys.modules[cls.__module__])
        _FIELDS[cls] = [(f, f.metadata.get("key", f.name), _parse(str(f.type), namespace))
                        for f in dataclasses.fields(cls)]
    return _FIELDS[cls]


_PLANS: dict[type, list[tuple]] = {}
_KNOWN: dict[type, frozenset] = {}


def field_plan(cls: type) -> list[tuple]:
    """(name, JSON key, shape, required, check) per field of a record class: what its
    reader does, for code that compiles a faster reader of the same contract (the
    cloud's ingest). A shape has ``kind`` (scalar, any, optional, list, dict, record),
    ``types`` (a scalar's Python types, ``NoneType`` when null is allowed), ``inner``
    and ``record``."""
    return _plan(cls)


def _plan(cls: type) -> list[tuple]:
    """(name, JSON key, shape, required, check) per field: what ``read`` does, computed once."""
    if cls not in _PLANS:
        _PLANS[cls] = [(f.name, key, shape, f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING, f.metadata.get("check"))
                       for f, key, shape in _fields(cls)]
    return _PLANS[cls]


def _known(cls: type) -> frozenset:
    """The JSON keys a record reads: its fields' and its envelope's."""
    if cls not in _KNOWN:
        _KNOWN[cls] = frozenset(key for _f, key, _s in _fields(cls)) | cls.ENVELOPE
    return _KNOWN[cls]


class Reading:
    """One read of a document: its error family, leniency and the unknown fields met."""

    def __init__(self, error: type[Exception], lenient: bool = False) -> None:
        self.error = error
        self.lenient = lenient
        self.unknown: list[str] = []


def join_path(where: str, key: str) -> str:
    """``where.key`` (or either alone when the other is empty)."""
    return f"{where}.{key}" if where and key else where or key


def _decode(shape: _Shape, value: Any, path: str, reading: Reading) -> Any:
    if shape.kind == "optional":
        return None if value is None else _decode(shape.inner, value, path, reading)
    if shape.kind == "any":
        return value
    if shape.kind == "scalar":
        kind = type(value)
        if kind is float and float in shape.types and math.isfinite(value):
            return value
        if kind is not float and kind in shape.types:  # exact type (no bool as int)
            return float(value) if kind is int and float in shape.types else value
        if not is_json_type(value, shape.types):
            got = "null" if value is None else type(value).__name__
            raise reading.error(f"field '{path}' must be {type_names(shape.types)}, got {got}")
        return float(value) if value is not None and float in shape.types else value
    if shape.kind == "record":
        return shape.record.read(value, path, reading)
    if shape.kind == "list":
        if not isinstance(value, list):
            raise reading.error(f"field '{path}' must be a list, got {type(value).__name__}")
        if shape.scalar_list and _all_of(value, shape.inner.types):
            return [float(v) for v in value] if float in shape.inner.types else value
        return [_decode(shape.inner, v, f"{path}[{i}]", reading) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        raise reading.error(f"field '{path}' must be an object, got {type(value).__name__}")
    inner = shape.inner
    if inner.kind == "scalar" and float not in inner.types and \
            _all_of(list(value.values()), inner.types):
        return dict(value)
    return {k: _decode(inner, v, join_path(path, k), reading) for k, v in value.items()}


def _all_of(values: list, types: tuple) -> bool:
    """Quick check that every value is a JSON value of ``types`` (the common case: all
    good); on False the caller checks one by one, for the error naming the bad one."""
    if float in types:
        return all((type(v) is int or (type(v) is float and math.isfinite(v))) for v in values)
    if types[0] is int:
        return all(type(v) is int for v in values)
    return all(type(v) is types[0] for v in values)


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _coerce(shape: _Shape, value: Any, error: type[Exception]) -> Any:
    """Plain dicts given where records belong become records (so callers may pass dicts)."""
    if value is None or not shape.has_record:
        return value
    if shape.kind == "optional":
        return _coerce(shape.inner, value, error)
    if shape.kind == "record":
        return shape.record.from_dict(value, error=error) if isinstance(value, dict) else value
    if shape.kind == "list" and isinstance(value, list):
        return [_coerce(shape.inner, v, error) for v in value]
    if shape.kind == "dict" and isinstance(value, dict):
        return {k: _coerce(shape.inner, v, error) for k, v in value.items()}
    return value


class Record:
    """Base of the typed contract dataclasses (subclasses are ``@dataclass``)."""

    ERROR: ClassVar[type[Exception]] = ValueError
    CONTRACT: ClassVar[str] = ""  # the name unknown fields are counted under
    ENVELOPE: ClassVar[frozenset] = frozenset()  # keys read outside the fields (e.g. "v")
    unknown_fields: tuple[str, ...] = ()  # set on parsed objects; never serialized

    def __post_init__(self) -> None:
        for f, _key, shape in _fields(type(self)):
            if shape.has_record:
                setattr(self, f.name, _coerce(shape, getattr(self, f.name), self.ERROR))

    @classmethod
    def from_dict(cls, doc: Any, where: str = "", error: type[Exception] | None = None,
                  lenient: bool = False) -> Any:
        """Validate a decoded JSON object; ``error`` names the first bad field's dotted path."""
        reading = Reading(error or cls.ERROR, lenient)
        record = cls.read(doc, where, reading)
        record.unknown_fields = tuple(reading.unknown)
        count_unknown(cls.CONTRACT or cls.__name__, record.unknown_fields)
        return record

    @classmethod
    def read(cls, doc: Any, where: str, reading: Reading) -> Any:
        """Read one object as part of a larger read (unknown fields go to ``reading``)."""
        doc = obj(doc, where, reading.error)
        values = {}
        for name, key, shape, required, check in _plan(cls):
            if key not in doc:
                if required:
                    raise reading.error(f"missing field '{join_path(where, key)}'")
                continue
            path = join_path(where, key)
            values[name] = value = _decode(shape, doc[key], path, reading)
            problem = check(value) if check is not None and value is not None else None
            if problem:
                raise reading.error(f"field '{path}' {problem}")
        if len(doc) > len(values):  # possibly unknown fields (or the envelope's keys)
            cls._unknown(doc, _known(cls), where, reading)
        record = cls(**values)
        found = record.problem()
        if found:
            raise reading.error(f"field '{join_path(where, found[0])}' {found[1]}")
        return record

    @classmethod
    def _unknown(cls, doc: dict[str, Any], known: frozenset, where: str,
                 reading: Reading) -> None:
        extra = [k for k in doc if k not in known]
        if extra and not reading.lenient:
            raise reading.error(f"unknown field '{join_path(where, extra[0])}'; allowed: "
                                f"{', '.join(sorted(known - cls.ENVELOPE))}")
        reading.unknown.extend(join_path(where, k) for k in extra)

    def problem(self) -> tuple[str, str] | None:
        """A cross-field problem as (relative field path, what is wrong), or None."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (records, lists and dicts all the way down)."""
        return {key: _encode(getattr(self, f.name)) for f, key, _shape in _fields(type(self))}
