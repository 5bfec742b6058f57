"""Drift detection's statistics: pure functions over counts (numpy/scipy), no store, no I/O.

``window`` sums telemetry messages into ``WindowCounts`` (per device, or pooled per
fleet); ``scores`` compares a window with its model version's ``ReferenceStats`` and
returns a ``DriftResult`` per kind of the model's task (``tasks``: a classifier's input
PSI, output JS distance, confidence drop; a detector's ``detection`` kinds; a generic
model's ``values``), each with its threshold, sample sizes and verdict; ``stats`` holds
the tests.
"""

from cloud_sync.drift.scores import (
    DRIFT,
    INSUFFICIENT,
    KINDS,
    OK,
    ChannelDrift,
    DriftConfig,
    DriftResult,
    any_drift,
    confidence_drift,
    input_drift,
    output_drift,
)
from cloud_sync.drift.tasks import ALL_KINDS, FAMILIES, TASK_SCORERS, drift_scores, task_kinds
from cloud_sync.drift.window import (
    DriftError,
    WindowCounts,
    aggregate,
    from_telemetry,
    group_by_model,
    pool,
    sliding_windows,
)

__all__ = [
    "ALL_KINDS", "DRIFT", "FAMILIES", "INSUFFICIENT", "KINDS", "OK", "TASK_SCORERS",
    "ChannelDrift", "DriftConfig", "DriftError", "DriftResult", "WindowCounts", "aggregate",
    "any_drift", "confidence_drift", "drift_scores", "from_telemetry", "group_by_model",
    "input_drift", "output_drift", "pool", "sliding_windows", "task_kinds",
]
