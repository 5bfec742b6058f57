"""The agent's metrics window: typed telemetry blocks, counted on the reference's bins."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent import protocol as p
from edge_agent.contracts import ConfidenceHist, InputHist, LatencyMs, ReferenceStats
from edge_agent.metrics import CONFIDENCE_EDGES, ModelMetrics

REFERENCE = {"n": 4, "input": {"bin_edges": [0.0, 0.5, 1.0], "channel_axis": 1,
                               "per_channel": [[2, 2]], "below": [0], "above": [0],
                               "range": [0.0, 1.0], "mean": [0.5], "std": [0.3]},
             "output": {"class_distribution": [0.5, 0.5], "confidence_edges": [0.0, 0.5, 1.0],
                        "confidence_hist": [0, 4], "probabilities": True}}


def test_input_histogram_uses_reference_bins():
    metrics = ModelMetrics(ReferenceStats.from_dict(REFERENCE))
    x = np.array([[[[-1.0, 0.25], [0.75, 2.0], [1.0, 0.0]]]], np.float32)  # one channel
    metrics.record(1.0, x, np.array([[0.9, 0.1]], np.float32))
    hist = metrics.close_window().input_hist
    # the last edge (1.0) is inside the last bin, like np.histogram; 0.0 is in the first
    assert isinstance(hist, InputHist)
    assert hist.below == [1] and hist.per_channel == [[2, 2]] and hist.above == [1]
    counts = np.histogram(x[(x >= 0) & (x <= 1)], bins=[0.0, 0.5, 1.0])[0]
    assert hist.per_channel[0] == counts.tolist()


def test_recorded_probabilities_flag_decides_confidence():
    # a softmax row that sums to 0.97 after int8 dequantization: the build said "probabilities"
    row = np.array([[0.9, 0.05, 0.02]], np.float32)
    told = ModelMetrics(ReferenceStats.from_dict(REFERENCE))
    _classes, conf = told.record(1.0, np.zeros((1, 1), np.float32), row)
    assert conf[0] == pytest.approx(0.9)


def test_window_is_typed_and_makes_valid_telemetry():
    metrics = ModelMetrics()
    for latency in (1.0, 2.0, 3.0):
        metrics.record(latency, np.zeros((1, 4), np.float32), np.array([[0.2, 0.8]], np.float32))
    window = metrics.close_window()
    assert isinstance(window.latency_ms, LatencyMs) and window.latency_ms.p50 == 2.0
    assert isinstance(window.confidence, ConfidenceHist)
    assert window.confidence.edges == CONFIDENCE_EDGES and sum(window.confidence.counts) == 3
    assert window.class_counts == {"1": 3} and window.input_hist is None
    message = p.Telemetry(device_id="pi-1", seq=1, ts=1.0, model={"name": "m", "version": "1"},
                          window_s=window.seconds, inferences=window.inferences,
                          errors=window.errors, latency_ms=window.latency_ms,
                          confidence=window.confidence, class_counts=window.class_counts)
    assert p.decode(p.TELEMETRY, message.to_json()) == message


def test_empty_window_has_null_latency_and_mean():
    window = ModelMetrics().close_window()
    assert window.latency_ms == LatencyMs(None, None, None) and window.confidence.mean is None
