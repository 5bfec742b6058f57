"""Drift detection's statistics: pure functions over counts (numpy/scipy), no store, no I/O.

``window`` sums telemetry messages into ``WindowCounts`` (per device, or pooled per
fleet); ``scores`` compares a window with its model version's ``ReferenceStats`` and
returns a ``DriftResult`` per kind (input PSI, output JS distance, confidence drop),
each with its threshold, sample sizes and verdict; ``stats`` holds the tests.
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
    drift_scores,
    input_drift,
    output_drift,
)
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
    "DRIFT", "INSUFFICIENT", "KINDS", "OK", "ChannelDrift", "DriftConfig", "DriftError",
    "DriftResult", "WindowCounts", "aggregate", "any_drift", "confidence_drift", "drift_scores",
    "from_telemetry", "group_by_model", "input_drift", "output_drift", "pool", "sliding_windows",
]
