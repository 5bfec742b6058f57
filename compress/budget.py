"""The build's time budget: how long the search may run, and where the time went.

Work is timed by phase (``distill``, ``export``, ``evaluate``, ``latency``) with
``Budget.phase``; the searches ask ``Budget.allows`` before starting more work, so a
build stops trying new candidates when its budget is spent (what was measured so far
still counts) and the report says where the seconds went.

A part of the budget can be held back (``reserve``) for work that only some profiles
need after their search (mixed precision, quantization-aware training): ``left`` does
not count it until ``release`` hands a part back, so the student search and the
profiles' walks cannot spend it first.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from compress.errors import CompressError

DEFAULT_TIME_BUDGET_S = 600.0
PHASES = ("distill", "export", "evaluate", "latency")


@dataclass
class Budget:
    """Seconds allowed for the whole search, and seconds spent per phase."""

    total_s: float = DEFAULT_TIME_BUDGET_S
    clock: Callable[[], float] = time.monotonic
    spent: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    stops: list[str] = field(default_factory=list)
    reserved_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.total_s > 0:
            raise CompressError(f"--time-budget {self.total_s!r} must be a positive number of "
                                "seconds, e.g. 600")
        self.started = self.clock()

    def start(self) -> None:
        """Start counting now (the search starts after the model and data are loaded)."""
        self.started = self.clock()

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return self.clock() - self.started

    def left(self) -> float:
        """Seconds left, less what is held back (negative when overspent)."""
        return self.total_s - self.elapsed() - self.reserved_s

    def reserve(self, seconds: float) -> None:
        """Hold ``seconds`` of the budget back until released (at most the whole)."""
        self.reserved_s = min(max(seconds, 0.0), self.total_s)

    def release(self, seconds: float) -> float:
        """Hand up to ``seconds`` of the held-back time back to ``left``; how much."""
        amount = min(max(seconds, 0.0), self.reserved_s)
        self.reserved_s -= amount
        return amount

    def allows(self, share_s: float, used_s: float, next_cost_s: float = 0.0) -> bool:
        """Whether work expected to take ``next_cost_s`` fits in a share of ``share_s`` of
        which ``used_s`` is spent, and in what is left of the whole budget."""
        return used_s + next_cost_s <= share_s and next_cost_s <= self.left()

    def stopped(self, why: str) -> None:
        """Record that a search stopped early because of the budget."""
        self.stops.append(why)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the seconds of the enclosed work towards ``name``."""
        start = self.clock()
        try:
            yield
        finally:
            self.spent[name] = self.spent.get(name, 0.0) + self.clock() - start

    def to_dict(self) -> dict[str, object]:
        """Plain JSON for the report: the budget, what was used, per phase, and any stops."""
        return {"budget_s": round(self.total_s, 3), "used_s": round(self.elapsed(), 2),
                "phases_s": {k: round(v, 2) for k, v in self.spent.items()},
                "stopped_by_budget": list(self.stops)}
