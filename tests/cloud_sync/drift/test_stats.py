"""The drift statistics on their own: PSI, JS distance, critical values, corrections."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.datasets import load_digits

from cloud_sync.drift import stats

RNG_SEED = 11


def test_psi_is_zero_for_the_same_shares_and_symmetric():
    a = np.array([0, 10, 20, 30, 40, 0])
    assert stats.psi(a, 3 * a) == pytest.approx(0.0, abs=1e-12)
    b = np.array([0, 40, 30, 20, 10, 0])
    assert stats.psi(a, b) > 0.5
    assert stats.psi(a, b) == pytest.approx(stats.psi(b, a))


def test_bins_empty_on_both_sides_change_nothing():
    a, b = np.array([5, 10, 20]), np.array([8, 12, 15])
    padded = stats.psi(np.r_[0, a, 0, 0], np.r_[0, b, 0, 0], 0.01)
    assert padded == pytest.approx(stats.psi(a, b, 0.01))
    assert stats.degrees_of_freedom(np.r_[0, a, 0], np.r_[0, b, 3]) == 3


def test_smoothing_never_raises_psi_and_keeps_empty_bins_finite():
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(200):
        w, r = rng.multinomial(50, np.ones(18) / 18), rng.multinomial(500, np.ones(18) / 18)
        scores = [stats.psi(w, r, eps) for eps in (1e-6, 1e-4, 1e-2, 0.1)]
        assert all(np.isfinite(scores))
        assert scores == sorted(scores, reverse=True)
    assert stats.psi([0, 10], [10, 10], 1e-4) < np.inf


def test_psi_rows_matches_psi_per_row():
    rng = np.random.default_rng(RNG_SEED)
    w, r = rng.integers(0, 20, (5, 8)), rng.integers(1, 20, (5, 8))
    eps = np.array([0.1, 0.01, 0.001, 0.02, 0.0])
    rows = stats.psi_rows(w, r, eps)
    assert rows == pytest.approx([stats.psi(w[i], r[i], eps[i]) for i in range(5)])


def _null_psi(n: int, m: int, pi: np.ndarray, draws: int, rng) -> np.ndarray:
    window, reference = rng.multinomial(n, pi, draws), rng.multinomial(m, pi, draws)
    return stats.psi_rows(window, reference, stats.smoothing_epsilon(0.5, n, m))


@pytest.mark.parametrize("level", [0.05, 0.01])
def test_psi_critical_value_matches_the_simulated_no_drift_quantile(level):
    rng = np.random.default_rng(RNG_SEED)
    pi = np.r_[0.0, rng.dirichlet(np.full(16, 5.0)), 0.0]  # below/above empty
    n, m = 400, 2000
    simulated = np.quantile(_null_psi(n, m, pi, 20000, rng), 1 - level)
    critical = stats.psi_critical_value(n, m, 15, level)
    assert simulated == pytest.approx(critical, rel=0.12)
    assert stats.psi_p_value(critical, n, m, 15) == pytest.approx(level)


def test_js_critical_value_matches_and_smoothed_small_windows_stay_below_it():
    rng = np.random.default_rng(RNG_SEED)
    pi, m = np.full(10, 0.1), 1000
    for n, rel in ((500, 0.12), (30, None)):
        w, r = rng.multinomial(n, pi, 20000), rng.multinomial(m, pi, 20000)
        eps = stats.smoothing_epsilon(0.5, n, m)
        d = np.array([stats.js_distance(a, b, eps) for a, b in zip(w, r, strict=True)])
        critical = stats.js_critical_value(n, m, 9, 0.01)
        if rel:
            assert np.quantile(d, 0.99) == pytest.approx(critical, rel=rel)
        else:  # 3 inferences per class: smoothed, conservative
            assert (d > critical).mean() <= 0.01
        assert stats.js_p_value(critical, n, m, 9) == pytest.approx(0.01)


def test_correlated_values_counted_per_inference_stay_conservative():
    """Each image's 64 pixels are one unit: with n = images the critical value holds."""
    images = load_digits().images.reshape(-1, 64) / 16.0
    edges = np.linspace(0, 1, 17)
    per_image = np.stack([np.histogram(x, edges)[0] for x in images])  # (1797, 16)
    rng = np.random.default_rng(RNG_SEED)
    n, m = 50, 800
    ref = per_image[rng.choice(len(images), m, replace=False)].sum(axis=0)
    windows = per_image[rng.integers(0, len(images), (4000, n))].sum(axis=1)
    scores = stats.psi_rows(windows, np.broadcast_to(ref, windows.shape),
                            stats.smoothing_epsilon(0.5, n, m))
    assert np.quantile(scores, 0.999) < stats.psi_critical_value(n, m, 15, 0.001)


def test_chi2_homogeneity_matches_scipy_and_the_js_test_agrees_roughly():
    w, r = np.array([30, 20, 10, 0]), np.array([300, 250, 150, 0])
    statistic, df, p = stats.chi2_homogeneity(w, r)
    expected = sps.chi2_contingency(np.array([[30, 20, 10], [300, 250, 150]]),
                                    correction=False)
    assert (statistic, df) == (pytest.approx(expected.statistic), 2)
    assert p == pytest.approx(expected.pvalue)
    js_p = stats.js_p_value(stats.js_distance(w, r), 60, 700, 2)
    assert js_p == pytest.approx(p, rel=0.3)


def test_bonferroni_and_benjamini_hochberg():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    rejected, level = stats.bonferroni(p, 0.05)
    assert level == pytest.approx(0.005) and rejected.tolist() == [True] + [False] * 9
    rejected, level = stats.benjamini_hochberg(p, 0.05)
    assert level == pytest.approx(0.01) and rejected.sum() == 2
    assert rejected.tolist() == (sps.false_discovery_control(p) <= 0.05).tolist()
    rejected, level = stats.benjamini_hochberg(np.array([0.5, 0.9]), 0.05)
    assert not rejected.any() and level == pytest.approx(0.025)
    assert set(stats.CORRECTIONS) == {"bonferroni", "bh"}


def test_histogram_mean_and_the_one_sided_drop_test():
    edges = np.linspace(0, 1, 11)
    mean, var = stats.hist_mean_var([0, 0, 0, 0, 0, 0, 0, 0, 5, 5], edges)
    assert (mean, var) == (pytest.approx(0.9), pytest.approx(0.0025))
    drop, critical, p = stats.mean_drop_test(0.9, 0.01, 200, 0.9, 0.01, 1000, 0.001)
    assert drop == 0 and p == pytest.approx(0.5) and critical > 0
    drop, critical, p = stats.mean_drop_test(0.7, 0.01, 200, 0.9, 0.01, 1000, 0.001)
    assert drop == pytest.approx(0.2) and drop > critical and p < 1e-9
    _, _, p = stats.mean_drop_test(0.95, 0.01, 200, 0.9, 0.01, 1000, 0.001)
    assert p > 0.5  # a rise is not a drop


def test_the_direct_ufuncs_are_scipy_stats_own():
    from scipy import stats as sps

    from cloud_sync.drift.stats import chi2_isf, chi2_sf, norm_isf, norm_sf

    for df in (1, 3, 9, 30):
        for q in (0.5, 0.01, 1e-5):
            assert chi2_isf(q, df) == sps.chi2.isf(q, df)
            assert chi2_sf(chi2_isf(q, df), df) == sps.chi2.sf(sps.chi2.isf(q, df), df)
    for x in (-2.0, 0.0, 0.3, 4.5):
        assert norm_sf(x) == sps.norm.sf(x)
    assert norm_isf(0.001) == sps.norm.isf(0.001)
