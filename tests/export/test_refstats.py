"""Reference statistics: the documented format, counted the way the device counts."""

from __future__ import annotations

import json

import numpy as np

from edge_agent.contracts import ReferenceStats
from edge_agent.metrics import CONFIDENCE_EDGES, ModelMetrics, channel_counts
from export.refstats import INPUT_BINS, reference_stats


def test_format_and_counts():
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((50, 3, 4, 4)).astype(np.float32)
    outputs = rng.standard_normal((50, 5)).astype(np.float32)
    stats = reference_stats(inputs, outputs)
    assert stats.n == 50
    inp, out = stats.input, stats.output
    assert len(inp.bin_edges) == INPUT_BINS + 1 and inp.channel_axis == 1
    assert len(inp.per_channel) == 3 and len(inp.per_channel[0]) == INPUT_BINS
    for c in range(3):
        assert inp.below[c] + sum(inp.per_channel[c]) + inp.above[c] == 50 * 16
    expected = channel_counts(inputs, np.asarray(inp.bin_edges), 1)
    assert inp.per_channel == expected[:, 1:-1].tolist()
    assert sum(inp.below) + sum(inp.above) < 0.05 * inputs.size  # 0.5th..99.5th pct
    assert abs(sum(out.class_distribution) - 1) < 1e-6 and len(out.class_distribution) == 5
    assert out.confidence_edges == CONFIDENCE_EDGES and sum(out.confidence_hist) == 50
    assert 0 < out.confidence_mean <= 1 and len(inp.mean) == len(inp.std) == 3


def test_reference_stats_are_valid_manifest_json():
    rng = np.random.default_rng(2)
    stats = reference_stats(rng.uniform(0, 1, (8, 2, 3, 3)), rng.standard_normal((8, 4)))
    assert ReferenceStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


def test_device_counts_the_same_bins():
    rng = np.random.default_rng(1)
    inputs = rng.uniform(0, 1, (20, 1, 8, 8)).astype(np.float32)
    stats = reference_stats(inputs, rng.standard_normal((20, 3)))
    metrics = ModelMetrics(stats)
    metrics.record(1.0, inputs, rng.standard_normal((20, 3)))
    window = metrics.close_window()
    assert window.input_hist.bin_edges == stats.input.bin_edges
    assert window.input_hist.per_channel == stats.input.per_channel
