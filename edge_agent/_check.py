"""Small, dependency-free checks for JSON documents (manifests, MQTT payloads).

Each check raises the caller's error type with a one-line message that names the
field by its dotted path, so users see exactly what to fix.
"""

from __future__ import annotations

import math
from typing import Any, Callable

Types = tuple[type, ...]
_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false",
          list: "a list", dict: "an object", type(None): "null"}


def type_names(types: Types) -> str:
    """Human names of JSON types, e.g. 'a string or null'."""
    return " or ".join(_NAMES.get(t, t.__name__) for t in types)


def is_json_type(value: Any, types: Types) -> bool:
    """True if a decoded JSON value has one of ``types`` (no bools as numbers, no NaN)."""
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not a number
    if isinstance(value, int) and float in types and int not in types:
        return True  # an integral JSON number is a fine float
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, types)


def field(doc: dict[str, Any], key: str, types: Types, where: str, error: type[Exception],
          default: Any = ..., check: Callable[[Any], str | None] | None = None) -> Any:
    """Return ``doc[key]`` if it has one of ``types``; ``default`` when absent, else raise."""
    path = f"{where}.{key}" if where else key
    if key not in doc:
        if default is ...:
            raise error(f"missing field '{path}'")
        return default
    value = doc[key]
    if not is_json_type(value, types):
        raise error(f"field '{path}' must be {type_names(types)}, got {type(value).__name__}")
    problem = check(value) if check else None
    if problem:
        raise error(f"field '{path}' {problem}")
    return value


def obj(value: Any, where: str, error: type[Exception]) -> dict[str, Any]:
    """``value`` as a JSON object, or raise naming ``where``."""
    if not isinstance(value, dict):
        raise error(f"'{where or 'document'}' must be an object, got {type(value).__name__}")
    return value


def no_unknown(doc: dict[str, Any], allowed: set, where: str, error: type[Exception]) -> None:
    """Reject keys outside ``allowed`` (typos otherwise pass silently)."""
    extra = sorted(set(doc) - allowed)
    if extra:
        raise error(f"unknown field '{(where + '.') if where else ''}{extra[0]}'; "
                    f"allowed: {', '.join(sorted(allowed))}")


def one_of(*choices: str) -> Callable[[Any], str | None]:
    """A check that a value is one of ``choices``."""
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}; got {value!r}"
    return check


def non_negative(value: Any) -> str | None:
    """A check that a number is >= 0."""
    return None if value >= 0 else f"must be >= 0, got {value}"


def positive(value: Any) -> str | None:
    """A check that a number is >= 1 (a count or stride)."""
    return None if value >= 1 else f"must be >= 1, got {value}"


def non_empty(value: Any) -> str | None:
    """A check that a string or list is not empty."""
    return None if len(value) > 0 else "must not be empty"


def all_non_negative(values: list) -> str | None:
    """A check that every number of a list is >= 0."""
    bad = next((v for v in values if v < 0), None)
    return None if bad is None else f"must hold values >= 0, got {bad}"


def rising(values: list) -> str | None:
    """A check that a list holds at least two strictly increasing bin edges."""
    if len(values) < 2 or any(b <= a for a, b in zip(values, values[1:])):
        return "must hold at least 2 strictly increasing edges"
    return None
