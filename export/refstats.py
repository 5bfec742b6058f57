"""Reference statistics of the calibration set, recorded in the manifest for drift detection.

Input bins are fixed at build time (16 equal bins between the 0.5th and 99.5th
percentile of all calibration input values) and counted per channel with
``edge_agent.metrics.channel_counts``: the same function the device uses on live
inputs, so the cloud compares like with like. Outputs: the predicted-class
distribution and the top-1 confidence histogram (and mean) on the device's fixed
edges; for detectors and generic models, the task's histograms (``compress.tasks``).
Returns the typed ``edge_agent.contracts.ReferenceStats``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge_agent.contracts.reference import (
    DetectionReference,
    InputReference,
    OutputReference,
    ReferenceStats,
    ValueReference,
)
from edge_agent.contracts.task import DetectionSpec, Task
from edge_agent.metrics import CONFIDENCE_EDGES, channel_counts, looks_like_probabilities, top1
from edge_agent.tasks import stats
from edge_agent.tasks.detection import postprocess

INPUT_BINS = 16
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5


def input_edges(inputs: np.ndarray, bins: int = INPUT_BINS) -> list[float]:
    """``bins + 1`` equal-width edges between the 0.5th and 99.5th percentiles."""
    low, high = np.percentile(inputs, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high <= low:
        high = low + 1e-6
    return [round(float(e), 6) for e in np.linspace(low, high, bins + 1)]


def input_stats(inputs: np.ndarray, channel_axis: int = 1) -> InputReference:
    """Per-channel histogram counts, out-of-range counts, range, mean and std."""
    edges = input_edges(inputs)
    counts = channel_counts(inputs, np.asarray(edges), channel_axis)
    per_channel = np.moveaxis(inputs, channel_axis, 0).reshape(inputs.shape[channel_axis], -1)
    return InputReference(
        bin_edges=edges, channel_axis=channel_axis, per_channel=counts[:, 1:-1].tolist(),
        below=counts[:, 0].tolist(), above=counts[:, -1].tolist(),
        range=[float(inputs.min()), float(inputs.max())],
        mean=[round(float(v), 6) for v in per_channel.mean(axis=1)],
        std=[round(float(v), 6) for v in per_channel.std(axis=1)])


def output_stats(outputs: np.ndarray) -> OutputReference:
    """Predicted-class distribution and top-1 confidence histogram of the model's outputs."""
    probabilities = looks_like_probabilities(outputs)
    classes, confidence = top1(outputs, probabilities)
    n_classes = outputs.reshape(len(outputs), -1).shape[1]
    distribution = np.bincount(classes, minlength=n_classes) / max(1, len(classes))
    hist = np.histogram(confidence, bins=CONFIDENCE_EDGES)[0]
    return OutputReference(
        class_distribution=[round(float(p), 6) for p in distribution],
        confidence_edges=list(CONFIDENCE_EDGES), confidence_hist=hist.tolist(),
        probabilities=probabilities,  # the device scores confidence the same way
        confidence_mean=round(float(confidence.mean()), 5) if len(confidence) else None)


def detection_reference(outputs: Any, spec: DetectionSpec) -> DetectionReference:
    """A detector's detections on the calibration set, on the device's fixed edges."""
    found = postprocess([np.asarray(o, dtype=np.float32) for o in _as_list(outputs)], spec)
    counts = stats.detection_counts(found, spec.num_classes, spec.input_size)
    total = max(1, sum(counts["class_counts"]))
    return DetectionReference(
        count_edges=list(stats.COUNT_EDGES), count_hist=counts["count_hist"],
        score_edges=list(stats.SCORE_EDGES), score_hist=counts["score_hist"],
        class_distribution=[round(c / total, 6) for c in counts["class_counts"]],
        area_edges=list(stats.AREA_EDGES), area_hist=counts["area_hist"],
        mean_count=round(float(np.mean([len(d) for d in found])) if found else 0.0, 4))


def value_references(outputs: Any, names: list[str]) -> list[ValueReference]:
    """A value histogram per output (generic models)."""
    parts = _as_list(outputs)
    names = names or [f"output_{i}" for i in range(len(parts))]
    refs = []
    for name, out in zip(names, parts):
        array = np.asarray(out, dtype=np.float64)
        edges = stats.value_edges(array)
        refs.append(ValueReference(name=name, edges=edges, counts=stats.value_counts(array, edges),
                                   mean=round(float(array.mean()), 6),
                                   std=round(float(array.std()), 6)))
    return refs


def _as_list(outputs: Any) -> list[Any]:
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


# The output part of reference_stats, by task kind: keyword arguments of ReferenceStats.
OUTPUT_REFERENCES: dict[str, Callable[[Any, Task], dict[str, Any]]] = {
    "classification": lambda out, task: {"output": output_stats(np.asarray(out, np.float32))},
    "detection": lambda out, task: {"detection": detection_reference(out, task.detection)},
    "generic": lambda out, task: {"values": value_references(out, task.output_names)},
}


def reference_stats(inputs: np.ndarray, outputs: Any, task: Task | None = None,
                    channel_axis: int = 1) -> ReferenceStats:
    """The manifest's ``reference_stats``: inputs and outputs on the calibration set (numpy;
    a tuple of arrays for several outputs); the output part is the task's."""
    task = task or Task()
    output = OUTPUT_REFERENCES[task.kind](outputs, task)
    return ReferenceStats(input=input_stats(np.asarray(inputs, dtype=np.float32), channel_axis),
                          n=len(inputs), **output)
