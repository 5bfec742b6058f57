"""Which drift kinds each task is scored on: one registry entry per task (the manifest's
``task.kind``), its kinds in order, each a scorer of ``(reference, window, config, alpha)``.

Input drift is the same for every task. The false-alarm rate ``alpha`` of a window is
split evenly over the task's kinds (a union bound), so a detector's five kinds together
raise no more false alarms than a classifier's three. ``FAMILIES`` says which of a
trigger policy's ``kinds`` (``input``, ``output``, ``confidence``) each kind counts as.
"""

from __future__ import annotations

from cloud_sync.drift import detection, values
from cloud_sync.drift.scores import (
    DriftConfig,
    DriftError,
    DriftResult,
    Scorer,
    confidence_drift,
    input_drift,
    output_drift,
)
from cloud_sync.drift.window import WindowCounts
from edge_agent.contracts.reference import ReferenceStats

DEFAULT_TASK = "classification"
TASK_SCORERS: dict[str, dict[str, Scorer]] = {
    "classification": {"input": input_drift, "output": output_drift,
                       "confidence": confidence_drift},
    "detection": {"input": input_drift, "det_count": detection.count_drift,
                  "det_score": detection.score_drift, "det_class": detection.class_drift,
                  "det_area": detection.area_drift},
    "generic": {"input": input_drift, "values": values.value_drift},
}
FAMILIES: dict[str, str] = {"input": "input", "output": "output", "confidence": "confidence",
                            "det_count": "output", "det_class": "output", "det_area": "output",
                            "det_score": "confidence", "values": "output"}
ALL_KINDS: tuple[str, ...] = tuple(dict.fromkeys(k for s in TASK_SCORERS.values() for k in s))


def task_kinds(task: str) -> tuple[str, ...]:
    """The drift kinds of ``task``, in order."""
    return tuple(_scorers(task))


def _scorers(task: str) -> dict[str, Scorer]:
    if task not in TASK_SCORERS:
        raise DriftError(f"no drift scores for task {task!r}; one of {', '.join(TASK_SCORERS)}")
    return TASK_SCORERS[task]


def drift_scores(reference: ReferenceStats, window: WindowCounts,
                 config: DriftConfig = DriftConfig(), task: str = DEFAULT_TASK
                 ) -> dict[str, DriftResult]:
    """Every kind of ``task`` for one window, by kind."""
    scorers = _scorers(task)
    alpha = config.alpha / len(scorers)
    return {kind: scorer(reference, window, config, alpha) for kind, scorer in scorers.items()}
