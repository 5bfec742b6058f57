"""Make a value once per key and remember a failure too (a failed export or QAT run is
not tried again within the build; the same error is raised to every caller)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


def made_once(cache: dict[Hashable, T | Exception], key: Hashable, make: Callable[[], T],
              errors: type[Exception]) -> T:
    """``cache[key]``, made by ``make`` on first use; an ``errors`` exception it raised is
    stored and raised again on every later call with ``key``."""
    if key not in cache:
        try:
            cache[key] = make()
        except errors as exc:
            cache[key] = exc
    found = cache[key]
    if isinstance(found, errors):
        raise found
    return found
