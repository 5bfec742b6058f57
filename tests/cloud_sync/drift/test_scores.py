"""Drift scores of windows counted by the agent's own code, on simulated digits fleets."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cloud_sync.drift import (
    DRIFT,
    INSUFFICIENT,
    OK,
    DriftConfig,
    DriftError,
    WindowCounts,
    drift_scores,
    input_drift,
    pool,
)
from cloud_sync.drift import stats as drift_stats
from edge_agent.metrics import ModelMetrics
from export.refstats import reference_stats
from tests.cloud_sync.drift.conftest import device_window

SIZES = (10, 25, 40, 60, 100, 200, 400, 700, 1000)


def fixed_rule(world, window) -> bool:
    """The common rule: PSI > 0.25 on any input channel (1e-4 share floor)."""
    ref = world.reference.input
    ref_counts = np.column_stack([ref.below, ref.per_channel, ref.above])
    return bool(drift_stats.psi_rows(window.input_counts, ref_counts, 1e-4).max() > 0.25)


def verdicts(world, window, config=DriftConfig()) -> dict[str, str]:
    return {k: r.verdict for k, r in drift_scores(world.reference, window, config).items()}


def test_a_long_stable_period_gives_no_drift_verdict(exposure_world, features_world):
    """1,200 no-drift device-windows of mixed sizes (10 to 1,000 inferences)."""
    rng = np.random.default_rng(2024)
    found = {DRIFT: 0, OK: 0, INSUFFICIENT: 0}
    for world, count in ((exposure_world, 1000), (features_world, 200)):
        for i in range(count):
            size = int(rng.choice(SIZES))
            window = device_window(world, size, rng, device=f"d{i % 50}")
            for verdict in verdicts(world, window).values():
                found[verdict] += 1
            if size < DriftConfig().min_inferences:
                assert set(verdicts(world, window).values()) == {INSUFFICIENT}
    assert found[DRIFT] == 0
    assert found[OK] > 2000


def test_the_fixed_psi_rule_fires_on_small_stable_windows(features_world):
    rng = np.random.default_rng(5)
    windows = [device_window(features_world, 50, rng) for _ in range(60)]
    assert sum(fixed_rule(features_world, w) for w in windows) >= 50
    assert all(DRIFT not in verdicts(features_world, w).values() for w in windows)


def test_counting_values_as_samples_cries_wolf_on_correlated_pixels(exposure_world):
    """Pixels of one image share its exposure: n = values is far too many samples."""
    rng = np.random.default_rng(6)
    ours, naive = DriftConfig(min_inferences=10), DriftConfig(min_inferences=10,
                                                              sample_unit="value")
    windows = [device_window(exposure_world, 20, rng) for _ in range(150)]
    assert sum(input_drift(exposure_world.reference, w, naive).verdict == DRIFT
               for w in windows) >= 10
    assert all(input_drift(exposure_world.reference, w, ours).verdict == OK for w in windows)


@pytest.mark.parametrize(("shift", "strength", "size"), [
    ("brightness", 0.3, 200), ("brightness", 0.1, 50), ("noise", 0.15, 200),
    ("rotation", 15.0, 100)])
def test_clear_input_shifts_are_detected(exposure_world, shift, strength, size):
    rng = np.random.default_rng(7)
    window = device_window(exposure_world, size, rng, shift, strength)
    result = input_drift(exposure_world.reference, window)
    assert result.verdict == DRIFT, result.reason
    assert result.score > result.threshold == max(result.critical_value, result.floor)
    assert result.share_drifting == 1.0 and result.channels[0].drifting
    assert (result.n_eff, result.n_raw) == (size, 64 * size)
    assert (result.m_eff, result.m_raw) == (800, 64 * 800)


def test_a_class_distribution_change_is_output_drift(image_world):
    rng = np.random.default_rng(8)
    flat = image_world.population.reshape(len(image_world.population), -1)
    low = image_world.population[image_world.model.predict(flat) < 4]
    world = dataclasses.replace(image_world, population=low)
    results = drift_scores(image_world.reference, device_window(world, 200, rng))
    assert results["output"].verdict == DRIFT, results["output"].reason
    assert results["output"].statistic == "js_distance"
    assert results["output"].n_eff == 200 and results["output"].m_eff == 800


def test_a_confidence_drop_is_detected(image_world):
    """Softened probabilities: same classes, lower top-1 confidence."""
    rng = np.random.default_rng(9)
    images = image_world.population[rng.integers(0, len(image_world.population), 300)]
    logp = image_world.model.predict_log_proba(images.reshape(300, -1)) / 3.0
    soft = np.exp(logp - logp.max(axis=1, keepdims=True))
    soft = (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)
    window = _window(image_world.reference, images.reshape(300, 1, 8, 8), soft)
    results = drift_scores(image_world.reference, window)
    assert results["confidence"].verdict == DRIFT, results["confidence"].reason
    assert results["confidence"].score > 0.05 and results["output"].verdict == OK


def _window(reference, inputs, outputs, scope="dev-1") -> WindowCounts:
    metrics = ModelMetrics(reference)
    metrics.record(1.0, inputs, outputs)
    w = metrics.close_window()
    counts = np.column_stack([w.input_hist.below, w.input_hist.per_channel, w.input_hist.above])
    return WindowCounts(
        scope=scope, model_name="m", model_version="1", start=0.0, end=60.0,
        inferences=w.inferences, messages=1, input_inferences=w.inferences,
        bin_edges=tuple(w.input_hist.bin_edges), input_counts=counts,
        class_counts={int(k): v for k, v in w.class_counts.items()},
        confidence_edges=tuple(w.confidence.edges),
        confidence_counts=np.asarray(w.confidence.counts),
        confidence_sum=w.confidence.mean * sum(w.confidence.counts))


def test_small_windows_are_insufficient_data_never_drift(exposure_world):
    rng = np.random.default_rng(10)
    window = device_window(exposure_world, 20, rng, "brightness", 0.3)
    result = input_drift(exposure_world.reference, window)
    assert result.verdict == INSUFFICIENT and "20 inferences < 50" in result.reason
    assert result.score is not None  # still scored, for the plot
    bare = dataclasses.replace(window, input_counts=None, bin_edges=None, input_inferences=0)
    result = input_drift(exposure_world.reference, bare)
    assert result.verdict == INSUFFICIENT and result.score is None


def test_pooled_fleet_windows_detect_what_no_single_device_can(exposure_world):
    rng = np.random.default_rng(12)
    shifted = [device_window(exposure_world, 30, rng, "brightness", 0.1, f"d{i}")
               for i in range(10)]
    assert all(input_drift(exposure_world.reference, w).verdict == INSUFFICIENT
               for w in shifted)
    fleet = pool(shifted, "fleet:f")
    assert fleet.inferences == 300 and len(fleet.devices) == 10
    assert input_drift(exposure_world.reference, fleet).verdict == DRIFT
    stable = pool([device_window(exposure_world, 30, rng, device=f"d{i}") for i in range(10)],
                  "fleet:f")
    assert set(verdicts(exposure_world, stable).values()) == {OK}


@pytest.fixture(scope="module")
def three_channels():
    """A 3-channel image reference (the same digit in every channel) and its population."""
    from sklearn.datasets import load_digits

    images = (load_digits().images / 16.0).astype(np.float32)
    x = np.repeat(images[:, None], 3, axis=1)  # (n, 3, 8, 8)
    outputs = np.full((len(x), 10), 0.1, np.float32)
    return reference_stats(x[:800], outputs[:800]), x[800:]


@pytest.mark.parametrize("correction", ["bonferroni", "bh"])
def test_one_drifting_channel_of_three(three_channels, correction):
    reference, population = three_channels
    x = population[:300].copy()
    x[:, 1] = np.clip(x[:, 1] + 0.3, 0, 1)
    window = _window(reference, x, np.full((300, 10), 0.1, np.float32))
    result = input_drift(reference, window, DriftConfig(correction=correction))
    assert result.verdict == DRIFT and result.channels_drifting == 1
    assert result.share_drifting == pytest.approx(1 / 3)
    assert result.channels[0].channel == 1 and result.channels[0].drifting
    assert not any(c.drifting for c in result.channels[1:])
    assert json.loads(json.dumps(result.to_dict()))["channels"][0]["channel"] == 1


def test_windows_of_another_bin_layout_are_refused(three_channels, exposure_world):
    reference, population = three_channels
    window = _window(reference, population[:100], np.full((100, 10), 0.1, np.float32))
    with pytest.raises(DriftError, match="bin edges"):
        input_drift(exposure_world.reference, window)
    narrow = dataclasses.replace(window, input_counts=window.input_counts[:1])
    with pytest.raises(DriftError, match="input channels"):
        input_drift(reference, narrow)


def test_config_round_trips_and_refuses_nonsense():
    config = DriftConfig(alpha=0.01, correction="bh", min_inferences=30)
    assert DriftConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.alpha_per_kind == pytest.approx(0.01 / 3)
    with pytest.raises(DriftError, match="correction"):
        DriftConfig(correction="holm")
    with pytest.raises(DriftError, match="alpha"):
        DriftConfig(alpha=0)
    with pytest.raises(DriftError, match="unknown keys"):
        DriftConfig.from_dict({"alpha": 0.01, "colour": "red"})
    with pytest.raises(DriftError, match="version"):
        DriftConfig.from_dict({"version": 9})
