"""What happened when: a timeline printed as it goes, and the stages' verdicts and figures
that end in ``summary.json`` (``{"stages": {NAME: {"status": "ok"|"failed", ...}}}``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.bundle.archive import atomic_write
from edgekit.cli.output import console

OK, FAILED = "ok", "failed"


@dataclass
class Event:
    """One line of the timeline: seconds since the start, the stage, what happened, and a
    marker kind for the report's charts (``shift``, ``trigger``, ``rollout``...) or ''."""

    t: float
    stage: str
    text: str
    mark: str = ""


class StageFailed(Exception):
    """A stage's own check failed: the stage is marked failed with this message."""


@dataclass
class Timeline:
    """The events and the stages' results of one demo run."""

    start: float = field(default_factory=time.time)
    events: list[Event] = field(default_factory=list)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def log(self, stage: str, text: str, mark: str = "") -> Event:
        """Record and print one event."""
        event = Event(round(time.time() - self.start, 1), stage, text, mark)
        self.events.append(event)
        console.print(f"[dim]{event.t:7.1f} s[/] [cyan]{stage:<9}[/] {text}", highlight=False)
        return event

    def at(self, mark: str) -> float | None:
        """Seconds since the start of the first event with this marker."""
        return next((e.t for e in self.events if e.mark == mark), None)

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Run a stage: its figures dict is yielded; an exception marks it failed (and is
        re-raised), otherwise it is ok."""
        figures: dict[str, Any] = {}
        began = time.time()
        self.stages[name] = {"status": "running"}
        try:
            yield figures
        except BaseException as exc:
            error = str(exc) or type(exc).__name__
            self.stages[name] = {"status": FAILED, "error": error, **figures,
                                 "seconds": round(time.time() - began, 1)}
            self.log(name, f"[red]failed:[/] {error}")
            raise
        self.stages[name] = {"status": OK, **figures, "seconds": round(time.time() - began, 1)}

    def ok(self) -> bool:
        """True when every stage that ran is ok."""
        return all(s["status"] == OK for s in self.stages.values())

    def summary(self) -> dict[str, Any]:
        """The summary.json document."""
        return {"ok": self.ok(), "seconds": round(time.time() - self.start, 1),
                "stages": self.stages,
                "timeline": [{"t": e.t, "stage": e.stage, "text": plain(e.text),
                              **({"mark": e.mark} if e.mark else {})} for e in self.events]}

    def write_summary(self, path: Path) -> Path:
        """Write summary.json atomically."""
        atomic_write(path, (json.dumps(self.summary(), indent=2) + "\n").encode())
        return path


def plain(text: str) -> str:
    """Text without rich's [style] markup."""
    from rich.text import Text

    return Text.from_markup(text).plain
