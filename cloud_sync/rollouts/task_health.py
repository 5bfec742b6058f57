"""Model health per task, canary against control: each task (the manifest's
``task.kind``) registers its figures and the checks on them (``TASK_HEALTH``).

- ``classification`` (as before issue 19): mean top-1 confidence drop, and the canary's
  predicted-class distance to its reference beyond control's (plain canary-to-control
  distance without references);
- ``detection``: detections per frame as a ratio canary / control (too few *and* too
  many fail: a detector that finds nothing, and one that finds boxes everywhere), mean
  score drop, class-mix distance (as the classifier's) and empty-frame rate increase.
  Each is also tested against its no-drift spread with the drift statistics
  (``cloud_sync.drift.stats``) at ``health_alpha``, with frames as the unit (boxes of
  one frame are correlated; Kish's effective frames, ``cloud_sync.drift.detection``), so
  a small canary's noise does not halt a rollout: a check fails when its figure is past
  the limit *and* its p-value is at most ``health_alpha``;
- ``generic``: the common checks only (latency, NaN/inf outputs, errors, silence).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cloud_sync.drift import stats
from cloud_sync.drift.detection import box_sample_size
from cloud_sync.rollouts.policy import Thresholds
from edge_agent.contracts.reference import ReferenceStats

if TYPE_CHECKING:
    from cloud_sync.rollouts.health import Context, Figures


@dataclass(frozen=True)
class Check:
    """A figure judged against a threshold of the policy: over it (or under, ``below``)."""

    figure: str
    limit: str
    label: str
    below: bool = False

    def fails(self, value: float | None, limit: float | None) -> bool:
        """True when ``value`` is past ``limit`` (nothing measured never fails)."""
        if value is None or limit is None:
            return False
        return value < limit if self.below else value > limit

    @property
    def sign(self) -> str:
        """How the reason reads: ``>`` or ``<``."""
        return "<" if self.below else ">"


Compare = Callable[["Figures", "Figures", "Context"], dict[str, Any]]


@dataclass(frozen=True)
class TaskHealth:
    """A task's health: its figures canary vs control, its checks, and where the class mix
    of a version's reference statistics is (for the class distance)."""

    checks: tuple[Check, ...]
    compare: Compare
    reference_classes: Callable[[ReferenceStats], list[float] | None]


def class_distance(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Jensen-Shannon distance (natural log, in [0, 0.83]) of two class-count histograms."""
    keys = sorted(set(a) | set(b))
    p = np.array([a.get(k, 0) for k in keys], float)
    q = np.array([b.get(k, 0) for k in keys], float)
    if not keys or p.sum() == 0 or q.sum() == 0:
        return None
    return float(stats.js_distance(p, q))


def _as_counts(shares: list[float] | None) -> dict[str, float] | None:
    return {str(i): s for i, s in enumerate(shares)} if shares else None


def class_mix_distance(canary: dict[str, int], control: dict[str, int], ctx: Context
                       ) -> tuple[float | None, str | None]:
    """(distance, basis): the canary's class-mix distance to its own reference beyond
    control's to its own, else the plain canary-to-control distance."""
    ref, ctrl_ref = _as_counts(ctx.canary_reference), _as_counts(ctx.control_reference)
    to_ref = class_distance(canary, ref) if ref else None
    control_to_ref = class_distance(control, ctrl_ref) if ctrl_ref else None
    if to_ref is not None and control_to_ref is not None:
        return to_ref - control_to_ref, (f"distance to own reference {to_ref:.3g} vs "
                                         f"control's {control_to_ref:.3g}")
    return class_distance(canary, control), "distance to control (no reference)"


# -- classification ------------------------------------------------------------------------


def _classification(canary: Figures, control: Figures, ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"confidence_drop": None, "class_distance": None,
                           "class_distance_basis": None}
    if control.inferences:
        if canary.confidence_mean is not None and control.confidence_mean is not None:
            out["confidence_drop"] = control.confidence_mean - canary.confidence_mean
        out["class_distance"], out["class_distance_basis"] = class_mix_distance(
            canary.class_counts, control.class_counts, ctx)
    return out


CLASSIFICATION = TaskHealth(
    checks=(Check("confidence_drop", "max_confidence_drop", "mean confidence drop vs control"),
            Check("class_distance", "max_class_distance",
                  "predicted-class distance beyond control's")),
    compare=_classification,
    reference_classes=lambda ref: ref.output.class_distribution if ref.output else None)


# -- detection -------------------------------------------------------------------------------


def _count_values(edges: list[float]) -> np.ndarray:
    """The mean detection count of each count bin ``[lo, hi)`` of whole numbers."""
    lo, hi = np.asarray(edges[:-1], float), np.ceil(np.asarray(edges[1:], float)) - 1
    return (lo + hi) / 2.0


def _count_var(f: Figures) -> float:
    if not f.count_edges or f.frames <= 0:
        return 0.0
    values, hist = _count_values(f.count_edges), np.asarray(f.count_hist, float)
    mean = float(hist @ values / hist.sum()) if hist.sum() else 0.0
    return float(hist @ (values - mean) ** 2 / hist.sum()) if hist.sum() else 0.0


def _two_sided(diff: float, se: float) -> float:
    return stats.normal_p_value(diff, se, two_sided=True)


def _per_frame_p(canary: Figures, control: Figures) -> float:
    """p-value of the difference in detections per frame (frames as the unit)."""
    var = max(_count_var(canary), _count_var(control), 0.25)  # >= a coin's: no zero spread
    diff = canary.per_frame - control.per_frame
    return _two_sided(diff, math.sqrt(var * stats.null_scale(canary.frames, control.frames)))


def _empty_p(canary: Figures, control: Figures) -> float:
    """p-value of the empty-frame rates' difference (two-proportion z-test on frames)."""
    pooled = (canary.empty_frames + control.empty_frames) / (canary.frames + control.frames)
    var = max(pooled * (1 - pooled), 0.25 / max(canary.frames, control.frames))
    return _two_sided(canary.empty_rate - control.empty_rate,
                      math.sqrt(var * stats.null_scale(canary.frames, control.frames)))


def _effective(f: Figures) -> int:
    return box_sample_size(f.count_edges, f.count_hist, f.detections) if f.count_edges else 0


def _score_p(canary: Figures, control: Figures, drop: float) -> float | None:
    n, m = _effective(canary), _effective(control)
    if n <= 0 or m <= 0:
        return None
    var = max(canary.score_var, control.score_var, 1e-4)
    return stats.normal_p_value(drop, math.sqrt(var * stats.null_scale(n, m)))


def _class_p(canary: Figures, control: Figures, distance: float) -> float | None:
    n, m = _effective(canary), _effective(control)
    classes = len(set(canary.detected_classes) | set(control.detected_classes))
    if n <= 0 or m <= 0:
        return None
    return stats.js_p_value(max(distance, 0.0), n, m, max(classes - 1, 1))


def _detection(canary: Figures, control: Figures, ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {
        "frames_per_side": [canary.frames, control.frames],
        "detections_per_frame_ratio": None, "score_drop": None, "detection_class_distance": None,
        "detection_class_basis": None, "empty_rate_increase": None, "p_values": {}}
    if not canary.frames or not control.frames:
        return out
    p = out["p_values"]
    if control.per_frame > 0:
        out["detections_per_frame_ratio"] = canary.per_frame / control.per_frame
    elif canary.per_frame > 0:  # control found nothing: count it as half a detection
        out["detections_per_frame_ratio"] = canary.per_frame / (0.5 / control.frames)
    p["detections_per_frame_ratio"] = _per_frame_p(canary, control)
    out["empty_rate_increase"] = canary.empty_rate - control.empty_rate
    p["empty_rate_increase"] = _empty_p(canary, control)
    if canary.score_mean is not None and control.score_mean is not None:
        out["score_drop"] = control.score_mean - canary.score_mean
        p["score_drop"] = _score_p(canary, control, out["score_drop"])
    distance, basis = class_mix_distance(canary.detected_classes, control.detected_classes, ctx)
    if distance is not None:
        out["detection_class_distance"], out["detection_class_basis"] = distance, basis
        p["detection_class_distance"] = _class_p(canary, control, distance)
    return out


DETECTION = TaskHealth(
    checks=(Check("detections_per_frame_ratio", "max_detections_ratio",
                  "detections per frame, ratio to control"),
            Check("detections_per_frame_ratio", "min_detections_ratio",
                  "detections per frame, ratio to control", below=True),
            Check("score_drop", "max_score_drop", "mean detection score drop vs control"),
            Check("detection_class_distance", "max_class_distance",
                  "detected class-mix distance beyond control's"),
            Check("empty_rate_increase", "max_empty_rate_increase",
                  "empty-frame rate increase vs control")),
    compare=_detection,
    reference_classes=lambda ref: ref.detection.class_distribution if ref.detection else None)

GENERIC = TaskHealth(checks=(), compare=lambda canary, control, ctx: {},
                     reference_classes=lambda ref: None)

TASK_HEALTH: dict[str, TaskHealth] = {"classification": CLASSIFICATION, "detection": DETECTION,
                                      "generic": GENERIC}


def significant(check: Check, figures: dict[str, Any], t: Thresholds) -> bool:
    """True unless the figure's p-value (where the task gives one) is above ``health_alpha``."""
    p = (figures.get("p_values") or {}).get(check.figure)
    return p is None or p <= t.health_alpha


def task_health(task: str) -> TaskHealth:
    """The registered health of ``task`` (a classifier's for an unknown one: the safe,
    pre-issue-19 behaviour of a cloud that meets a newer task)."""
    return TASK_HEALTH.get(task, CLASSIFICATION)
