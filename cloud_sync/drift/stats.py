"""Drift statistics: pure functions over count arrays (numpy/scipy), no I/O.

Every test here compares a window histogram (``n`` effective samples) with a
reference histogram (``m`` effective samples) drawn, under "no drift", from the
same distribution ``pi`` over ``B`` bins. Then the window share ``q`` and the
reference share ``p`` are independent with covariances ``(diag(pi) - pi pi') / n``
and ``(...) / m``, so ``q - p`` has covariance ``(1/n + 1/m)(diag(pi) - pi pi')`` and

    PSI = sum (q - p) ln(q / p)  ~  sum (q - p)^2 / pi  ~  (1/n + 1/m) chi2(B - 1)
    8 JSD(p, q)                  ~  sum (q - p)^2 / pi  ~  (1/n + 1/m) chi2(B - 1)

(second-order Taylor expansion; JSD in nats, so the JS distance is ``sqrt(JSD)``).
Critical values and p-values below come from these scaled chi-square laws, with
``B`` = bins holding mass in either histogram (a bin empty in both carries no
information and is dropped before anything is computed).

Correlated samples (pixels of one image) do not break this when ``n`` counts
independent *units* (inferences) rather than values: a window share is the mean
of per-image share vectors ``h`` (points of the simplex) and for any vector ``v``,
``E[(v.h)^2] <= E[sum_b h_b v_b^2] = sum_b pi_b v_b^2`` (Jensen, since ``h`` is a
probability vector), i.e. ``Cov(h) <= diag(pi) - pi pi'`` in the PSD order. The
quadratic form's weights are then all <= 1, so it is stochastically smaller than
the chi-square above: using ``n = min(values counted, inferences)`` keeps the
critical value valid (conservative) however strongly the values of one input
are correlated. See ``cloud_sync.drift.scores`` for where each ``n`` comes from.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

# -- histograms --------------------------------------------------------------------------



def _sps():
    """scipy.stats, imported on first use (it takes most of a second; configs and CLIs that
    never score drift should not pay it)."""
    from scipy import stats

    return stats


@functools.cache
def _special():
    """scipy.special's ufuncs behind scipy.stats' chi2 and norm (the same functions, called
    directly: scipy.stats' argument checks cost ~100 us a call, the ufuncs ~1 us, and a
    drift step makes several calls per device window)."""
    from scipy import special

    return special


def chi2_isf(q, df):
    """``scipy.stats.chi2.isf(q, df)``."""
    return _special().chdtri(df, q)


def chi2_sf(x, df):
    """``scipy.stats.chi2.sf(x, df)``."""
    return _special().chdtrc(df, x)


def norm_isf(q):
    """``scipy.stats.norm.isf(q)``."""
    return -_special().ndtri(q)


def norm_sf(x):
    """``scipy.stats.norm.sf(x)``."""
    return _special().ndtr(-np.asarray(x, dtype=np.float64))


def jensenshannon(p, q, base=None):
    """scipy's Jensen-Shannon distance, imported on first use."""
    from scipy.spatial.distance import jensenshannon as js

    return js(p, q, base=base)

def live_bins(window: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mask of bins with mass in the window or the reference (the others are dropped)."""
    return (np.asarray(window) > 0) | (np.asarray(reference) > 0)


def degrees_of_freedom(window: np.ndarray, reference: np.ndarray) -> np.ndarray | int:
    """Live bins minus one, per row (0 when at most one bin holds mass: nothing can move)."""
    live = live_bins(window, reference).sum(axis=-1)
    df = np.maximum(live - 1, 0)
    return int(df) if np.ndim(df) == 0 else df


def shares(counts: np.ndarray, epsilon: float = 0.0) -> np.ndarray:
    """Counts as shares, each raised by ``epsilon`` and renormalised: ``(c/N + eps)/(1 + B eps)``.

    Adding the same ``epsilon`` to both histograms moves every ratio ``q/p`` towards
    1 and shrinks every difference ``q - p`` by ``1 + B eps``, so smoothing can only
    lower PSI (each term ``(q - p) ln(q/p)`` shrinks): it never creates drift.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("a histogram with no counts has no shares")
    return (counts / total + epsilon) / (1.0 + len(counts) * epsilon)


def smoothing_epsilon(pseudo_count: float, n_eff, m_eff):
    """The share added to each live bin: ``pseudo_count`` samples of the smaller side.

    Scaling with the effective sample size keeps a window of 50 inferences whose
    pixels miss a rare bin from scoring an empty-bin log ratio of ``ln(1e-4 / p)``.
    Measured (iid multinomial windows, m = 800, 16 bins, level 3e-4): with 0.5 the
    chi-square critical value's false-alarm rate is 0 to 0.6x nominal for n <= 100
    and 0.7 to 1.6x for n >= 200, where the PSI floor takes over; with a fixed 1e-4
    it is 60 to 1,000x nominal for n <= 100.
    """
    return pseudo_count / np.maximum(np.minimum(n_eff, m_eff), 1.0)


def psi(window: np.ndarray, reference: np.ndarray, epsilon: float = 1e-4) -> float:
    """Population stability index ``sum (q - p) ln(q / p)`` over the live bins.

    ``window`` and ``reference`` are counts on the same bins (include ``below`` /
    ``above`` as bins); both are smoothed by ``epsilon`` (see ``shares``).
    """
    return float(psi_rows(np.asarray(window)[None], np.asarray(reference)[None], epsilon)[0])


def psi_rows(window: np.ndarray, reference: np.ndarray, epsilon) -> np.ndarray:
    """``psi`` of each row of two (channels, bins) count arrays, ``epsilon`` per row."""
    window = np.asarray(window, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    live = live_bins(window, reference)
    eps = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), (len(window),))[:, None]
    norm = 1.0 + live.sum(axis=1, keepdims=True) * eps
    totals_w, totals_r = window.sum(axis=1, keepdims=True), reference.sum(axis=1, keepdims=True)
    if (totals_w <= 0).any() or (totals_r <= 0).any():
        raise ValueError("a histogram with no counts has no shares")
    q = (window / totals_w + eps) / norm
    p = (reference / totals_r + eps) / norm
    return np.where(live, (q - p) * np.log(q / p), 0.0).sum(axis=1)


def null_scale(n_eff, m_eff):
    """``1/n + 1/m``: how wide the no-drift spread of PSI and 8·JSD is."""
    return 1.0 / np.asarray(n_eff, dtype=np.float64) + 1.0 / np.asarray(m_eff, dtype=np.float64)


def psi_critical_value(n_eff, m_eff, df, level: float):
    """No-drift PSI exceeded with probability ``level``: ``(1/n + 1/m) chi2_{1-level}(df)``.

    Infinite where ``df`` is 0. Scalars in, float out; arrays in, array out.
    """
    df = np.asarray(df)
    value = np.where(df > 0, null_scale(n_eff, m_eff) * chi2_isf(level, np.maximum(df, 1)),
                     np.inf)
    return float(value) if value.ndim == 0 else value


def psi_p_value(score, n_eff, m_eff, df):
    """Probability of a PSI at least ``score`` with no drift (1.0 where ``df`` is 0)."""
    df = np.asarray(df)
    value = np.where(df > 0, chi2_sf(np.asarray(score) / null_scale(n_eff, m_eff),
                                         np.maximum(df, 1)), 1.0)
    return float(value) if value.ndim == 0 else value


# -- class distributions -----------------------------------------------------------------


def js_distance(window: np.ndarray, reference: np.ndarray, epsilon: float = 0.0) -> float:
    """Jensen-Shannon distance (natural log, in [0, sqrt(ln 2)]) of two count vectors.

    Both are smoothed by ``epsilon`` on their live bins, as in ``psi``. JSD is jointly
    convex, so mixing both sides with the same uniform share can only lower it; with
    ``epsilon = smoothing_epsilon(0.5, n, m)`` the chi-square critical values are
    conservative even for windows of 30 inferences over 10 classes, where the raw
    statistic's tail is up to 8 times heavier than chi-square's (Monte Carlo).
    """
    window, reference = np.asarray(window, np.float64), np.asarray(reference, np.float64)
    live = live_bins(window, reference)
    q, p = shares(window[live], epsilon), shares(reference[live], epsilon)
    return float(jensenshannon(q, p))


def js_critical_value(n_eff: float, m_eff: float, df: int, level: float) -> float:
    """No-drift JS distance exceeded with probability ``level``: ``sqrt(scale chi2 / 8)``."""
    if df <= 0:
        return float("inf")
    return float(np.sqrt(null_scale(n_eff, m_eff) * chi2_isf(level, df) / 8.0))


def js_p_value(distance: float, n_eff: float, m_eff: float, df: int) -> float:
    """Probability of a JS distance at least ``distance`` with no drift."""
    if df <= 0:
        return 1.0
    return float(chi2_sf(8.0 * distance**2 / null_scale(n_eff, m_eff), df))


def chi2_homogeneity(window: np.ndarray, reference: np.ndarray) -> tuple[float, int, float]:
    """Pearson chi-square test that two count vectors share one distribution.

    Returns (statistic, degrees of freedom, p-value) on the live bins; a cross-check
    of the JS-distance test (both are the same quadratic form to second order).
    """
    window, reference = np.asarray(window, float), np.asarray(reference, float)
    live = live_bins(window, reference)
    if live.sum() < 2:
        return 0.0, 0, 1.0
    table = np.vstack([window[live], reference[live]])
    result = _sps().chi2_contingency(table, correction=False)
    return float(result.statistic), int(result.dof), float(result.pvalue)


# -- confidence ----------------------------------------------------------------------------


def hist_mean_var(counts: np.ndarray, edges: np.ndarray) -> tuple[float, float]:
    """Mean and variance of a histogram with its mass at the bin centres.

    Grouping adds about ``h^2/12`` to the variance (Sheppard), so this variance is
    on the large side: tests built on it are conservative.
    """
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2.0
    total = counts.sum()
    if total <= 0:
        raise ValueError("a histogram with no counts has no mean")
    mean = float(counts @ centres / total)
    return mean, float(counts @ (centres - mean) ** 2 / total)


def mean_drop_test(window_mean: float, window_var: float, n: float, reference_mean: float,
                   reference_var: float, m: float, level: float) -> tuple[float, float, float]:
    """One-sided test that the window's mean fell below the reference's.

    Returns (drop = reference mean - window mean, critical drop, p-value). The
    standard error uses the larger of the two variances for both sides, so a
    small window whose few values happen to agree cannot shrink it.
    """
    drop = reference_mean - window_mean
    se = float(np.sqrt(max(window_var, reference_var) * null_scale(n, m)))
    if se <= 0:
        return drop, 0.0, 0.0 if drop > 0 else 1.0
    return drop, se * float(norm_isf(level)), float(norm_sf(drop / se))


def normal_p_value(diff: float, se: float, two_sided: bool = False) -> float:
    """Probability of a normal difference at least ``diff`` (``|diff|`` when two-sided)
    with standard error ``se`` and no true difference (0 or 1 when ``se`` is 0)."""
    if se <= 0:
        return 0.0 if (abs(diff) if two_sided else diff) > 0 else 1.0
    tail = float(norm_sf((abs(diff) if two_sided else diff) / se))
    return min(1.0, 2.0 * tail) if two_sided else tail


# -- many channels ---------------------------------------------------------------------------


def bonferroni(p_values: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """(rejected mask, per-test level ``alpha / k``): family-wise error at most ``alpha``."""
    p_values = np.asarray(p_values, dtype=np.float64)
    level = alpha / max(len(p_values), 1)
    return p_values <= level, level


def benjamini_hochberg(p_values: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """(rejected mask, per-test level ``r alpha / k``): false discovery rate at most ``alpha``.

    ``r`` is the largest rank whose sorted p-value is at most ``r alpha / k``;
    everything at or below that level is rejected. With nothing rejected the
    level reported is ``alpha / k`` (the first rung). Under the global null (no
    channel drifts) BH rejects anything with probability at most ``alpha``, so the
    per-window false-alarm rate is the same as Bonferroni's.
    """
    p_values = np.asarray(p_values, dtype=np.float64)
    k = max(len(p_values), 1)
    ranked = np.sort(p_values)
    passing = np.nonzero(ranked <= alpha * np.arange(1, len(ranked) + 1) / k)[0]
    level = alpha * (passing[-1] + 1) / k if len(passing) else alpha / k
    return p_values <= level, level


CORRECTIONS: dict[str, Callable[[np.ndarray, float], tuple[np.ndarray, float]]] = {
    "bonferroni": bonferroni,
    "bh": benjamini_hochberg,
}
