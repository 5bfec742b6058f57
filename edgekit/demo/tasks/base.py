"""What a demo task plugs into the loop: its model and data, its traffic, its figure of merit,
its retraining command and its report sections.

The stages of ``edgekit.demo.run`` are the same for every task; whatever differs between a
classifier and a detector is a method or a field of the task's ``DemoTask``, found by name
in ``DEMO_TASKS`` (``--task``). A new task is one module registering one subclass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edge_agent.errors import EdgekitError

if TYPE_CHECKING:
    from edgekit.demo.run import Demo
    from edgekit.demo.settings import DemoSettings
    from edgekit.demo.stream import Observation, Pools


@dataclass(frozen=True)
class Answer:
    """What a device answered for one input: the task's answer (a class index, a list of
    detections...), its confidence in it (0..1) and the model version that served it."""

    answer: Any
    confidence: float
    version: str


@dataclass(frozen=True)
class Line:
    """One line of a per-device chart: its label, colour and the figure it plots (a key of
    ``DemoTask.figures``; every figure is in 0..1)."""

    label: str
    colour: str
    figure: str


@dataclass(frozen=True)
class BuildSpec:
    """What ``edgekit build`` gets for this task (``--model``, ``--data``, ``--recipe``)."""

    model: str
    data: str
    recipe: Path | None = None
    tolerance: str = "0.01"


@dataclass(frozen=True)
class Recovery:
    """The recovery verdict: the figures and, when it did not recover, why."""

    before: float | None
    after: float | None
    share_of_drop: float | None
    failure: str | None = None
    baseline: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)


class DemoTask(ABC):
    """One task's part of the demo (subclasses set the class fields)."""

    name: ClassVar[str]
    model_name: ClassVar[str]            # the model's name in the cloud's registry
    metric: ClassVar[str]                # the figure of merit's key in summary.json
    metric_label: ClassVar[str]          # ... and how people read it
    build_metric_label: ClassVar[str]    # what ``edgekit build`` reports as "metric"
    default_arch: ClassVar[str]
    archs: ClassVar[tuple[str, ...]]
    default_shift: ClassVar[str]
    shifts: ClassVar[tuple[str, ...]]
    retrain_module: ClassVar[str]        # ``python -m`` module the trigger's command runs
    trigger_kinds: ClassVar[tuple[str, ...]] = ("output", "confidence")
    sizes: ClassVar[dict[str, dict[str, Any]]]   # DemoSettings fields per --size
    lines: ClassVar[tuple[Line, ...]]    # the per-device chart's lines
    bucket_s: ClassVar[float] = 5.0      # the charts' time buckets
    traffic: ClassVar[str]               # what the streams send, for the timeline

    # -- model ---------------------------------------------------------------------------
    @abstractmethod
    def train(self, s: DemoSettings, fig: dict[str, Any]) -> tuple[Path, str]:
        """The baseline's weights (trained now, or cached in ``s.out``) and a line for the
        timeline; figures into ``fig`` (a validation figure, epochs, ``cached``)."""

    @abstractmethod
    def build_spec(self, s: DemoSettings, root: Path) -> BuildSpec:
        """``edgekit build``'s model, data and recipe for v1."""

    # -- traffic -------------------------------------------------------------------------
    @abstractmethod
    def pools(self, s: DemoSettings) -> Pools:
        """The inputs the streams send (``stream``: before the rollout; ``fresh``: never
        sent before, to measure recovery), with their truths."""

    @abstractmethod
    def ask(self, port: int, x: Any) -> Answer:
        """Send one input to the agent on ``port``; its answer."""

    @abstractmethod
    def score(self, observations: list[Observation]) -> float | None:
        """The figure of merit over some observations (None for none)."""

    def figures(self, observations: list[Observation]) -> dict[str, float | None]:
        """The chart figures of one time bucket, by ``Line.figure``."""
        from edgekit.demo.stream import mean_confidence

        return {"metric": self.score(observations),
                "confidence": mean_confidence(observations)}

    # -- the loop ------------------------------------------------------------------------
    def agent_settings(self) -> dict[str, Any]:
        """Telemetry and sampling settings of the demo's agents."""
        return {"telemetry_interval_s": 1.0, "sample_rate_per_min": 120.0,
                "low_confidence": 0.9}

    def retrain_settings(self, s: DemoSettings, weights: Path) -> dict[str, Any]:
        """The task's part of the retraining command's config file."""
        return {}

    def recovery(self, s: DemoSettings, baseline: float | None, before: float | None,
                 after: float | None) -> Recovery:
        """Recovered when ``after`` reaches ``s.min_recovered``, or (with
        ``s.recovered_share``) when it made up that share of the drop from ``baseline``."""
        share = None
        if None not in (baseline, before, after) and baseline > before:
            share = round((after - before) / (baseline - before), 4)
        ok = after is not None and (after >= s.min_recovered or (
            s.recovered_share is not None and share is not None and share >= s.recovered_share))
        failure = None if ok else (
            f"{self.metric_label} on the shifted streams {after} is below {s.min_recovered}"
            + (f" and made up {share} of the drop (< {s.recovered_share})"
               if s.recovered_share is not None else ""))
        return Recovery(before, after, share, failure, baseline)

    def snapshot(self, demo: Demo, phase: str) -> None:
        """A hook at ``before`` (the trigger fired, v1 serves) and ``after`` (recovered):
        a task may keep an example for the report in ``demo.facts``."""
        return None

    def report_sections(self, demo: Demo) -> list[str]:
        """Extra HTML sections of report.html for this task."""
        return []


DEMO_TASKS: dict[str, Callable[[], DemoTask]] = {}


def register(cls: type[DemoTask]) -> type[DemoTask]:
    """Class decorator: make a task available to ``--task`` under its ``name``."""
    DEMO_TASKS[cls.name] = cls
    return cls


def task_for(name: str) -> DemoTask:
    """The registered task ``name``; a one-line error naming the known ones otherwise."""
    from edgekit.demo import tasks  # noqa: F401  (registers the built-in tasks)

    if name not in DEMO_TASKS:
        raise EdgekitError(f"unknown demo task {name!r}; choose one of "
                           f"{', '.join(sorted(DEMO_TASKS))}")
    return DEMO_TASKS[name]()
