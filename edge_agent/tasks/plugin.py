"""The device side of a task: one plug-in per task kind, found in a registry, never an
if-chain on the kind.

A plug-in turns a model's raw outputs into what the agent serves and reports:

- ``after_run``: on every inference, the post-processing the answer and telemetry need
  (``postprocess``: a detector's NMS at the manifest's thresholds), counted into the
  window's output block (``count``);
- ``answer``: what ``Agent.predict`` returns and ``POST /v1/predict`` sends;
- ``inspect``: finiteness, a confidence per image (for ``low_confidence`` samples) and
  what a sample carries, computed only when probation or sampling looks;
- ``golden``: the verdict on a golden pair (and on probation's golden probe);
- ``new_counter``: the telemetry window's output block (None: the classifier's figures
  in ``edge_agent.metrics`` are all there is).

The built-in plug-ins live in ``classify``, ``detect`` and ``generic``; registering one
is ``@register("kind")`` on its class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from edge_agent.bundle.manifest import Manifest
from edge_agent.errors import ModelLoadError
from edge_agent.golden import GoldenResult, compare
from edge_agent.tasks.options import PredictOptions

PLUGINS: dict[str, type[TaskPlugin]] = {}


def register(kind: str) -> Callable[[type[TaskPlugin]], type[TaskPlugin]]:
    """Register a plug-in class for task ``kind``."""
    def add(cls: type[TaskPlugin]) -> type[TaskPlugin]:
        cls.kind = kind
        PLUGINS[kind] = cls
        return cls
    return add


def plugin_for(manifest: Manifest) -> TaskPlugin:
    """The plug-in of the manifest's task, bound to that manifest."""
    from edge_agent.tasks import classify, detect, generic  # noqa: F401  (they register)

    kind = manifest.task.kind
    if kind not in PLUGINS:
        raise ModelLoadError(f"this agent has no plug-in for task {kind!r}; known: "
                             f"{', '.join(sorted(PLUGINS))} (upgrade edgekit)")
    return PLUGINS[kind](manifest)


@dataclass
class Inspection:
    """What probation and sampling read of one inference."""

    finite: bool
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """One figure per image in [0, 1]; below ``low_confidence`` the image is a sample."""
    describe: Callable[[int], dict[str, Any]] = lambda i: {}
    """Image ``i``'s sample fields (``prediction`` or ``detections``)."""


class TaskPlugin:
    """Base of the task plug-ins (see the module docstring); this is the generic behaviour."""

    kind: ClassVar[str] = ""
    classifies: ClassVar[bool] = False
    """True when ``edge_agent.metrics`` scores the first output as class scores."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    def new_counter(self) -> Any:
        """A fresh telemetry output counter (``record``/``close``), or None."""
        return None

    def after_run(self, outputs: list[np.ndarray], counter: Any) -> Any:
        """Post-process one batch for the answer and count it into ``counter`` (None: not
        counted; ``count`` later); returns what ``answer`` and ``inspect`` reuse."""
        post = self.postprocess(outputs)
        if counter is not None:
            self.count(outputs, post, counter)
        return post

    def postprocess(self, outputs: list[np.ndarray]) -> Any:
        """What ``answer`` and ``inspect`` reuse (a detector's detections); None here."""
        return None

    def count(self, outputs: list[np.ndarray], post: Any, counter: Any) -> None:
        """Count one post-processed batch into the telemetry window's output block."""

    def answer(self, outputs: list[np.ndarray], post: Any, options: PredictOptions) -> Any:
        """The answer of one prediction (``options.raw`` is handled by the caller)."""
        return outputs

    def finite(self, outputs: list[np.ndarray], post: Any) -> bool:
        """False when the batch's outputs hold NaN or inf (models not scored as classifiers:
        counted in telemetry's ``model.non_finite``)."""
        return all(bool(np.isfinite(o).all()) for o in outputs)

    def inspect(self, outputs: list[np.ndarray], post: Any, metrics: Any) -> Inspection:
        """Finiteness and per-image confidence of one batch."""
        return Inspection(finite=self.finite(outputs, post))

    def golden(self, expected: list[np.ndarray], actual: list[np.ndarray]) -> GoldenResult:
        """The golden verdict: every output within the manifest's tolerance."""
        golden = self.manifest.golden
        atol, rtol = (golden.atol, golden.rtol) if golden else (1e-4, 1e-3)
        return compare(expected, actual, atol, rtol)
