"""Progress bars and status lines for long steps (training, distillation, calibration,
benchmarking), on stderr. Off by default so library calls and tests stay quiet; the CLI
and the benchmark turn them on with ``enable()``.

The console writes to its own copy of stderr's file descriptor, taken by ``enable()``,
so bars still show while ``export.quiet`` silences what converters print on fd 2.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")
_state = {"enabled": False, "own_fd": False}
console = Console(stderr=True)


def enable(on: bool = True) -> None:
    """Show (or hide) progress bars and status lines."""
    global console
    _state["enabled"] = on
    if on and not _state["own_fd"]:
        try:
            console = Console(file=os.fdopen(os.dup(2), "w", buffering=1))
            _state["own_fd"] = True
        except OSError:
            console = Console(stderr=True)


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
