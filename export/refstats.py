"""Reference statistics of the calibration set, recorded in the manifest for drift detection.

Input bins are fixed at build time (16 equal bins between the 0.5th and 99.5th
percentile of all calibration input values) and counted per channel with
``edge_agent.metrics.channel_counts``: the same function the device uses on live
inputs, so the cloud compares like with like. Outputs: the predicted-class
distribution and the top-1 confidence histogram (and mean) on the device's fixed
edges. Returns the typed ``edge_agent.contracts.ReferenceStats``.
"""

from __future__ import annotations

import numpy as np

from edge_agent.contracts.reference import InputReference, OutputReference, ReferenceStats
from edge_agent.metrics import CONFIDENCE_EDGES, channel_counts, looks_like_probabilities, top1

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


def reference_stats(inputs: np.ndarray, outputs: np.ndarray,
                    channel_axis: int = 1) -> ReferenceStats:
    """The manifest's ``reference_stats``: inputs and outputs on the calibration set."""
    return ReferenceStats(input=input_stats(np.asarray(inputs, dtype=np.float32), channel_axis),
                          output=output_stats(np.asarray(outputs, dtype=np.float32)),
                          n=len(inputs))
