"""The agent's metrics window: typed telemetry blocks, counted on the reference's bins."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent import protocol as p
from edge_agent.contracts import ConfidenceHist, InputHist, LatencyMs, ReferenceStats
from edge_agent.metrics import (
    BATCH,
    CONFIDENCE_EDGES,
    ModelMetrics,
    channel_counts,
    sample_stride,
    top1,
)

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
    _classes, conf, finite = told.score(row)
    assert finite and conf[0] == pytest.approx(0.9)
    told.record(1.0, np.zeros((1, 1), np.float32), row)
    assert told.close_window().confidence.mean == pytest.approx(0.9)


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


def _reference(edges: list[float], channels: int) -> ReferenceStats:
    bins = len(edges) - 1
    doc = {"n": 1, "input": {"bin_edges": edges, "channel_axis": 1,
                             "per_channel": [[1] * bins] * channels, "below": [0] * channels,
                             "above": [0] * channels, "range": [0.0, 1.0],
                             "mean": [0.5] * channels, "std": [0.3] * channels}}
    return ReferenceStats.from_dict(doc)


def test_buffered_single_inferences_count_exactly_what_one_pass_would(rng):
    """Single examples are buffered and counted BATCH at a time: the window is the same."""
    edges = [0.0, 0.25, 0.5, 0.75, 1.0]
    metrics = ModelMetrics(_reference(edges, 2))
    xs = rng.uniform(-0.2, 1.2, (2 * BATCH + 7, 1, 2, 4, 4)).astype(np.float32)
    outs = rng.standard_normal((len(xs), 1, 5)).astype(np.float32)
    outs[3, 0, 1] = np.nan
    for x, out in zip(xs, outs):
        metrics.record(1.0, x, out)
    window = metrics.close_window()
    good = np.isfinite(outs[:, 0]).all(axis=1)
    classes, conf = top1(outs[good, 0], False)
    counts = channel_counts(xs[:, 0], np.asarray(edges), axis=1)
    assert window.inferences == len(xs) and window.non_finite == 1
    assert window.class_counts == {str(c): int(n) for c, n in
                                   zip(*np.unique(classes, return_counts=True))}
    assert window.confidence.mean == pytest.approx(float(conf.mean()), abs=1e-5)
    assert window.input_hist.per_channel == counts[:, 1:-1].tolist()
    assert window.input_hist.below == counts[:, 0].tolist()
    assert window.input_hist.sample_stride == 1


def test_large_inputs_are_histogrammed_on_a_strided_sample_that_reports_its_size(rng):
    edges = [0.0, 0.5, 1.0]
    metrics = ModelMetrics(_reference(edges, 3))
    x = rng.uniform(0, 1, (8, 3, 224, 224)).astype(np.float32)
    x[:, 0, :112] *= 0.5  # channel 0: top half darker
    for image in x:
        metrics.record(1.0, image[None], np.array([[0.1, 0.9]], np.float32))
    hist = metrics.close_window().input_hist
    stride = hist.sample_stride
    assert stride > 1 and 224 % stride and all(stride % d for d in range(2, stride))
    per_image = len(range(0, 224 * 224, stride))
    totals = [b + sum(row) + a
              for b, row, a in zip(hist.below, hist.per_channel, hist.above)]
    assert totals == [8 * per_image] * 3  # the counts say how much was counted
    full = channel_counts(x, np.asarray(edges))[:, 1:-1]
    share = np.asarray(hist.per_channel) / np.asarray(hist.per_channel).sum(1, keepdims=True)
    assert np.allclose(share, full / full.sum(1, keepdims=True), atol=0.05)  # ~3.5 sd


def test_sample_stride_is_one_for_small_inputs_and_a_prime_off_the_row_length():
    assert sample_stride(64, 8) == 1 and sample_stride(512, 32) == 1
    for values, row in ((224 * 224, 224), (128 * 128, 128), (640 * 480, 640)):
        stride = sample_stride(values, row)
        assert row % stride and all(stride % d for d in range(2, stride))
        assert values / stride <= 256 * 1.2


def test_a_batch_of_several_is_counted_at_once(rng):
    metrics = ModelMetrics(_reference([0.0, 1.0], 1))
    metrics.record(1.0, rng.uniform(0, 1, (1, 1, 2, 2)).astype(np.float32),
                   np.array([[0.1, 0.9]], np.float32))  # buffered
    metrics.record(2.0, rng.uniform(0, 1, (3, 1, 2, 2)).astype(np.float32),
                   np.array([[0.9, 0.1]] * 3, np.float32))  # flushes, then counted
    window = metrics.close_window()
    assert window.inferences == 4 and window.class_counts == {"1": 1, "0": 3}
    assert sum(window.input_hist.per_channel[0]) == 16
