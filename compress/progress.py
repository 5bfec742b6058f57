"""Progress bars and status lines for long steps (training, distillation, calibration,
benchmarking), on stderr. Off by default so library calls and tests stay quiet; the CLI
and the benchmark turn them on with ``enable()``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")
_state = {"enabled": False}
console = Console(stderr=True)


def enable(on: bool = True) -> None:
    """Show (or hide) progress bars and status lines."""
    _state["enabled"] = on


def enabled() -> bool:
    """Whether progress is shown."""
    return _state["enabled"]


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` with a transient progress bar when progress is enabled."""
    if not _state["enabled"] or not console.is_terminal:  # bars only where they redraw
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total, info="")
        for item in items:
            yield item
            bar.advance(task)


def note(message: str) -> None:
    """A one-line status message (a step finished, a candidate was measured)."""
    if _state["enabled"]:
        console.print(message, highlight=False)
