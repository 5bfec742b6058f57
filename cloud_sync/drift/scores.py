"""Drift scores of one window against its model version's reference statistics.

Three kinds, each a score with the threshold it was judged by, so every stored
score can be plotted and audited:

- ``input``: PSI per input channel (``below``/``above`` as two extra bins, empty
  bins smoothed by ``smoothing`` pseudo-inferences on both sides, which can only
  lower PSI), tested against its no-drift law ``(1/n + 1/m) chi2(B - 1)``, with
  Bonferroni or Benjamini-Hochberg over channels; the kind's score is the channel
  furthest over its threshold, and the share of channels drifting is reported.
- ``output``: Jensen-Shannon distance of predicted-class counts from the reference
  class distribution (``8 JSD ~ (1/n + 1/m) chi2(K - 1)``), smoothed as PSI is.
- ``confidence``: drop of the mean top-1 confidence below the reference mean,
  one-sided z-test with histogram variances.

A score is drift only above *both* a configured floor (an effect worth acting on)
and the no-drift critical value for that window's sample sizes at the false-alarm
rate ``alpha`` (split evenly over the three kinds, and over channels). A window
with fewer than ``min_inferences`` inferences is ``insufficient_data``, never drift.

Sample sizes. Values inside one input (pixels of one image) are correlated, so the
number of values counted overstates the information in a histogram; the unit that
is independent is the inference. ``n = min(values counted, window inferences)`` and
``m = min(reference values, reference.n)`` make the critical value conservative
however correlated the values are (proof in ``cloud_sync.drift.stats``); counting
values (``sample_unit="value"``) is kept only to show how often that cries wolf.
Classes and confidences are one per inference: ``n`` = inferences scored,
``m = reference.n``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from cloud_sync.drift import stats
from cloud_sync.drift.window import DriftError, WindowCounts
from edge_agent.contracts.reference import ReferenceStats

KINDS = ("input", "output", "confidence")
DRIFT, OK, INSUFFICIENT = "drift", "ok", "insufficient_data"
SAMPLE_UNITS = ("inference", "value")


@dataclass(frozen=True)
class DriftConfig:
    """How drift is judged; round-trips through JSON (``to_dict`` / ``from_dict``)."""

    VERSION: ClassVar[int] = 1
    alpha: float = 0.001
    """False-alarm rate per window with no drift, over all three kinds together."""
    correction: str = "bonferroni"
    """Over input channels: ``bonferroni`` or ``bh`` (Benjamini-Hochberg)."""
    min_inferences: int = 50
    psi_floor: float = 0.1
    js_floor: float = 0.1
    confidence_floor: float = 0.05
    """Smallest mean top-1 confidence drop that counts."""
    smoothing: float = 0.5
    """Pseudo-count added to every live bin, in samples of the smaller side."""
    sample_unit: str = "inference"
    """``inference`` (valid) or ``value`` (naive: every counted value a sample)."""
    top_channels: int = 5

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise DriftError(f"drift config: {problem}")

    def _problem(self) -> str | None:
        if not 0 < self.alpha < 1:
            return f"alpha must be between 0 and 1, got {self.alpha}"
        if self.correction not in stats.CORRECTIONS:
            return f"correction must be one of {', '.join(stats.CORRECTIONS)}"
        if self.sample_unit not in SAMPLE_UNITS:
            return f"sample_unit must be one of {', '.join(SAMPLE_UNITS)}"
        if self.min_inferences < 1 or self.top_channels < 1:
            return "min_inferences and top_channels must be >= 1"
        if min(self.psi_floor, self.js_floor, self.confidence_floor, self.smoothing) < 0:
            return "floors and smoothing must be >= 0"
        return None

    @property
    def alpha_per_kind(self) -> float:
        """The false-alarm rate each kind is tested at (``alpha`` split over the kinds)."""
        return self.alpha / len(KINDS)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, with the config's version."""
        return {"version": self.VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DriftConfig:
        """Read ``to_dict``'s output; unknown keys or a newer version are an error."""
        doc = dict(doc)
        version = doc.pop("version", cls.VERSION)
        if version != cls.VERSION:
            raise DriftError(f"drift config version {version} is not {cls.VERSION}")
        unknown = set(doc) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise DriftError(f"drift config: unknown keys {', '.join(sorted(unknown))}")
        return cls(**doc)


@dataclass(frozen=True)
class ChannelDrift:
    """One input channel's PSI and what it was judged against."""

    channel: int
    psi: float
    critical_value: float
    threshold: float
    p_value: float
    df: int
    n_eff: int
    m_eff: int
    drifting: bool


@dataclass(frozen=True)
class DriftResult:
    """One score of one window: drift iff ``score > threshold = max(critical_value, floor)``
    and the window is large enough."""

    kind: str
    statistic: str
    scope: str
    model_name: str
    model_version: str
    window_start: float
    window_end: float
    inferences: int
    verdict: str
    score: float | None = None
    critical_value: float | None = None
    floor: float = 0.0
    threshold: float | None = None
    p_value: float | None = None
    alpha: float = 0.0
    """False-alarm rate of this kind; ``level`` is the per-test rate after correction."""
    level: float = 0.0
    n_eff: int = 0
    m_eff: int = 0
    n_raw: int = 0
    m_raw: int = 0
    share_drifting: float | None = None
    channels_drifting: int = 0
    channels: tuple[ChannelDrift, ...] = ()
    """Top channels, furthest over their thresholds first (input only)."""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (an infinite critical value, where nothing can move, is null)."""
        return _json(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DriftResult:
        """The result ``to_dict`` wrote (a null critical value comes back as infinite)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in doc.items() if k in names}
        values["channels"] = tuple(ChannelDrift(**{**c, "critical_value": _finite(
            c["critical_value"]), "threshold": _finite(c["threshold"])})
            for c in values.get("channels") or ())
        if values.get("critical_value") is None and doc.get("score") is not None:
            values["critical_value"] = math.inf
        return cls(**values)


def _finite(value: float | None) -> float:
    return math.inf if value is None else value


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class _Judged:
    """A kind's figures before the verdict."""

    statistic: str
    score: float | None = None
    critical: float | None = None
    floor: float = 0.0
    p_value: float | None = None
    level: float = 0.0
    n_eff: int = 0
    m_eff: int = 0
    n_raw: int = 0
    m_raw: int = 0
    units: int = 0
    """Inferences behind the score (compared with ``min_inferences``)."""
    alpha: float = 0.0
    """This kind's false-alarm rate (the task's ``alpha`` split over its kinds)."""
    missing: str = ""
    channels: list[ChannelDrift] = field(default_factory=list)


def _result(kind: str, window: WindowCounts, config: DriftConfig, j: _Judged) -> DriftResult:
    threshold = None if j.critical is None else max(j.critical, j.floor)
    if j.missing or j.score is None:
        verdict, reason = INSUFFICIENT, j.missing or "nothing to score"
    elif j.units < config.min_inferences:
        verdict, reason = INSUFFICIENT, f"{j.units} inferences < {config.min_inferences}"
    elif j.score > threshold:
        verdict, reason = DRIFT, f"{j.statistic} {j.score:.4g} > threshold {threshold:.4g}"
    else:
        verdict, reason = OK, f"{j.statistic} {j.score:.4g} <= threshold {threshold:.4g}"
    channels = j.channels if verdict != INSUFFICIENT else [
        dataclasses.replace(c, drifting=False) for c in j.channels]
    ranked = sorted(channels, key=lambda c: -_ratio(c.psi, c.threshold))
    drifting = sum(c.drifting for c in channels)
    return DriftResult(
        kind=kind, statistic=j.statistic, scope=window.scope, model_name=window.model_name,
        model_version=window.model_version, window_start=window.start, window_end=window.end,
        inferences=window.inferences, verdict=verdict, score=j.score, critical_value=j.critical,
        floor=j.floor, threshold=threshold, p_value=j.p_value,
        alpha=j.alpha or config.alpha_per_kind,
        level=j.level, n_eff=j.n_eff, m_eff=j.m_eff, n_raw=j.n_raw, m_raw=j.m_raw,
        share_drifting=drifting / len(channels) if channels else None,
        channels_drifting=drifting, channels=tuple(ranked[:config.top_channels]), reason=reason)


def _ratio(score: float, threshold: float) -> float:
    return score / threshold if threshold > 0 else math.inf if score > 0 else 0.0


def _same_edges(window_edges, reference_edges, what: str) -> None:
    if window_edges is None:
        return
    if len(window_edges) != len(reference_edges) or not np.allclose(
            window_edges, reference_edges, rtol=1e-9, atol=1e-12):
        raise DriftError(f"the window's {what} bin edges are not the reference's: "
                         "compare a window with its own model version's reference statistics")


# -- input -----------------------------------------------------------------------------------


def input_drift(reference: ReferenceStats, window: WindowCounts,
                config: DriftConfig = DriftConfig(), alpha: float | None = None) -> DriftResult:
    """PSI per input channel against the reference, corrected over channels; ``alpha`` is
    this kind's false-alarm rate (default: ``config.alpha_per_kind``)."""
    j = _Judged("psi", floor=config.psi_floor, units=window.input_inferences,
                alpha=alpha or config.alpha_per_kind)
    ref = reference.input
    if ref is None:
        j.missing = "the reference statistics hold no input histograms"
    elif window.input_counts is None:
        j.missing = "the window holds no input histograms"
    else:
        _same_edges(window.bin_edges, ref.bin_edges, "input")
        ref_counts = np.column_stack([ref.below, np.asarray(ref.per_channel).reshape(
            len(ref.below), -1), ref.above])
        if ref_counts.shape != window.input_counts.shape:
            raise DriftError(f"the window has {len(window.input_counts)} input channels, "
                             f"the reference {len(ref_counts)}")
        judge_rows(j, window.input_counts, ref_counts, window.input_inferences,
                   reference.n, config)
    return _result("input", window, config, j)


def judge_rows(j: _Judged, counts: np.ndarray, ref_counts: np.ndarray, inferences: int,
               reference_n: int, config: DriftConfig, what: str = "an input channel") -> None:
    """PSI of each row (channel, or output) of ``counts`` against ``ref_counts``, tested at
    ``j.alpha`` corrected over rows; ``n = min(values, inferences)`` per row."""
    n_raw, m_raw = counts.sum(axis=1), ref_counts.sum(axis=1)
    if n_raw.min() <= 0 or m_raw.min() <= 0:
        j.missing = f"{what} has no counts"
        return
    if config.sample_unit == "inference":
        n_eff = np.minimum(n_raw, inferences)
        m_eff = np.minimum(m_raw, reference_n) if reference_n else m_raw
    else:
        n_eff, m_eff = n_raw, m_raw
    df = stats.degrees_of_freedom(counts, ref_counts)
    psis = stats.psi_rows(counts, ref_counts,
                          stats.smoothing_epsilon(config.smoothing, n_eff, m_eff))
    p = stats.psi_p_value(psis, n_eff, m_eff, df)
    _, level = stats.CORRECTIONS[config.correction](p, j.alpha)
    crit = stats.psi_critical_value(n_eff, m_eff, df, level)
    threshold = np.maximum(crit, config.psi_floor)
    j.channels = [ChannelDrift(
        channel=c, psi=float(psis[c]), critical_value=float(crit[c]),
        threshold=float(threshold[c]), p_value=float(p[c]), df=int(df[c]), n_eff=int(n_eff[c]),
        m_eff=int(m_eff[c]), drifting=bool(psis[c] > threshold[c])) for c in range(len(psis))]
    top = max(range(len(psis)), key=lambda c: _ratio(psis[c], threshold[c]))
    j.score, j.critical, j.p_value, j.level = (float(psis[top]), float(crit[top]),
                                               float(p[top]), level)
    j.n_eff, j.m_eff, j.n_raw, j.m_raw = (int(n_eff[top]), int(m_eff[top]), int(n_raw[top]),
                                          int(m_raw[top]))


# -- output ----------------------------------------------------------------------------------


def output_drift(reference: ReferenceStats, window: WindowCounts,
                 config: DriftConfig = DriftConfig(), alpha: float | None = None) -> DriftResult:
    """Jensen-Shannon distance of the predicted-class counts from the reference's."""
    n = sum(window.class_counts.values())
    alpha = alpha or config.alpha_per_kind
    j = _Judged("js_distance", floor=config.js_floor, units=n, n_raw=n, n_eff=n,
                m_raw=reference.n, m_eff=reference.n, level=alpha, alpha=alpha)
    ref = reference.output
    if ref is None or not ref.class_distribution or reference.n <= 0:
        j.missing = "the reference statistics hold no class distribution"
    elif n <= 0:
        j.missing = "the window holds no class counts"
    else:
        size = max(len(ref.class_distribution), max(window.class_counts) + 1)
        observed = np.zeros(size)
        for k, v in window.class_counts.items():
            observed[k] = v
        expected = np.zeros(size)
        expected[:len(ref.class_distribution)] = np.asarray(ref.class_distribution) * reference.n
        df = stats.degrees_of_freedom(observed, expected)
        eps = stats.smoothing_epsilon(config.smoothing, n, reference.n)
        j.score = stats.js_distance(observed, expected, float(eps))
        j.critical = stats.js_critical_value(n, reference.n, df, j.level)
        j.p_value = stats.js_p_value(j.score, n, reference.n, df)
    return _result("output", window, config, j)


# -- confidence ------------------------------------------------------------------------------


def confidence_drift(reference: ReferenceStats, window: WindowCounts,
                     config: DriftConfig = DriftConfig(), alpha: float | None = None
                     ) -> DriftResult:
    """Drop of the mean top-1 confidence below the reference mean (one-sided)."""
    n = window.scored
    alpha = alpha or config.alpha_per_kind
    j = _Judged("confidence_drop", floor=config.confidence_floor, units=n, n_raw=n, n_eff=n,
                level=alpha, alpha=alpha)
    ref = reference.output
    ref_counts = np.asarray(ref.confidence_hist if ref else [], dtype=np.float64)
    if ref is None or ref_counts.sum() <= 0:
        j.missing = "the reference statistics hold no confidence histogram"
    elif n <= 0 or window.confidence_counts is None:
        j.missing = "the window holds no confidences"
    else:
        _same_edges(window.confidence_edges, ref.confidence_edges, "confidence")
        edges = np.asarray(ref.confidence_edges)
        j.m_raw = int(ref_counts.sum())
        j.m_eff = min(j.m_raw, reference.n) if reference.n else j.m_raw
        ref_mean, ref_var = stats.hist_mean_var(ref_counts, edges)
        if ref.confidence_mean is not None:
            ref_mean = ref.confidence_mean
        _, win_var = stats.hist_mean_var(window.confidence_counts, edges)
        j.score, j.critical, j.p_value = stats.mean_drop_test(
            window.confidence_mean, win_var, n, ref_mean, ref_var, j.m_eff, j.level)
    return _result("confidence", window, config, j)


Scorer = Callable[[ReferenceStats, WindowCounts, DriftConfig, float], DriftResult]
"""A kind's scorer: reference, window, config and the kind's false-alarm rate."""
SCORERS: dict[str, Scorer] = {
    "input": input_drift,
    "output": output_drift,
    "confidence": confidence_drift,
}
"""The classifier's kinds (``cloud_sync.drift.tasks`` holds every task's)."""


def any_drift(results: dict[str, DriftResult]) -> bool:
    """True when at least one kind's verdict is drift."""
    return any(r.verdict == DRIFT for r in results.values())
