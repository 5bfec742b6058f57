"""A small named registry: techniques, exporters and quantizers are looked up here, never
through an if-chain on names."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from edge_agent.errors import EdgekitError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps keys to registered objects; unknown keys give a one-line error listing known ones."""

    def __init__(self, what: str, error: type[EdgekitError] = EdgekitError) -> None:
        self._what = what
        self._error = error
        self._items: dict[Hashable, T] = {}

    def register(self, key: Hashable) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``key``; registering a key twice is a bug."""
        def wrap(obj: T) -> T:
            if key in self._items:
                raise ValueError(f"{self._what} {key!r} is registered twice")
            self._items[key] = obj
            return obj
        return wrap

    def get(self, key: Hashable) -> T:
        """The object registered under ``key``."""
        if key not in self._items:
            known = ", ".join(sorted(str(k) for k in self._items)) or "none"
            raise self._error(f"unknown {self._what} {key!r}; known: {known}")
        return self._items[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._items)

    def items(self) -> list[tuple[Hashable, T]]:
        """(key, object) pairs in registration order."""
        return list(self._items.items())

    def keys(self) -> list[Hashable]:
        """Registered keys in registration order."""
        return list(self._items)
