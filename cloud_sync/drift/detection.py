"""Output drift of a detector: its telemetry ``detection`` window against the bundle's
``reference_stats.detection``, with the statistics of ``cloud_sync.drift.stats``.

Four kinds, each judged like the classifier's (score above both a floor and the
no-drift critical value at the kind's false-alarm rate):

- ``det_count``: PSI of frames by number of detections (0, 1, 2, ... boxes);
- ``det_score``: PSI of the detections' score histogram;
- ``det_class``: Jensen-Shannon distance of the detected class mix from the reference's;
- ``det_area``: PSI of the detections' relative box areas.

Sample sizes: the unit is the frame, never the box. ``det_count`` counts one value per
frame, so ``n = frames``. The three box histograms pool boxes, and the boxes of one
frame are correlated (one scene, one lighting, the same object found twice...). Write
``D`` for the window's boxes, ``c_f`` for frame ``f``'s and ``h_f`` for the share vector
of its boxes over the bins. The window share is the box-weighted mean of frame shares,

    q = sum_f c_f h_f / D,   so   q - pi = sum_f c_f (h_f - pi) / D.

With no drift the frames are independent and ``E[h_f | c_f] = pi``; whatever the boxes
of one frame do together, ``h_f`` is a probability vector, so ``Cov(h_f) <= diag(pi) -
pi pi'`` (Jensen, as for the pixels of one image: ``cloud_sync.drift.stats``). Hence

    Cov(q) = sum_f c_f^2 Cov(h_f) / D^2  <=  (diag(pi) - pi pi') / n,
    n = D^2 / sum_f c_f^2                  (Kish's effective sample size).

``n`` is at most the frames with a detection (Cauchy-Schwarz) and at most ``D``; it
equals ``D`` only when every frame holds one box. Counting boxes (``n = D``) assumes
the opposite extreme, that a frame's boxes are independent draws: a frame of ten boxes
of one class then weighs as ten frames, and the no-drift spread is underestimated ten
times (``test_detection_drift`` measures that false-alarm rate). Telemetry does not carry
``sum c_f^2`` but carries frames by count bin, so ``sum c_f^2`` is bounded above by each
bin's largest count (a smaller ``n``: conservative; exact for the 0-5 bins). The
reference's ``m`` is computed the same way from its own count histogram.
"""

from __future__ import annotations

import numpy as np

from cloud_sync.drift import stats
from cloud_sync.drift.scores import DriftConfig, DriftResult, _Judged, _result, _same_edges
from cloud_sync.drift.task_counts import DetectionCounts
from cloud_sync.drift.window import WindowCounts
from edge_agent.contracts.reference import DetectionReference, ReferenceStats


def box_sample_size(count_edges, count_hist, boxes: int) -> int:
    """Kish's effective number of frames ``D^2 / sum c_f^2`` of ``boxes`` detections whose
    frames are histogrammed by count (``sum c_f^2`` bounded by each bin's largest count)."""
    if boxes <= 0:
        return 0
    largest = np.ceil(np.asarray(count_edges[1:], dtype=np.float64)) - 1.0
    squares = float(np.asarray(count_hist, dtype=np.float64) @ largest**2)
    squares = max(min(squares, boxes * float(largest[-1])), float(boxes))
    return int(boxes * boxes // squares)


def _parts(reference: ReferenceStats, window: WindowCounts, j: _Judged
           ) -> tuple[DetectionReference, DetectionCounts] | None:
    ref, det = reference.detection, window.tasks.detection
    if ref is None:
        j.missing = "the reference statistics hold no detection histograms"
    elif det is None:
        j.missing = "the window holds no detection counts"
    else:
        return ref, det
    return None


def _psi(j: _Judged, window: np.ndarray, ref: np.ndarray, n: int, m: int,
         config: DriftConfig) -> None:
    j.n_raw, j.m_raw = int(window.sum()), int(ref.sum())
    j.n_eff, j.m_eff = n, m
    if n <= 0 or m <= 0 or j.m_raw <= 0:
        j.missing = j.missing or "nothing to compare: no detections on one side"
        return
    df = stats.degrees_of_freedom(window, ref)
    eps = stats.smoothing_epsilon(config.smoothing, n, m)
    j.score = stats.psi(window, ref, float(eps))
    j.critical = stats.psi_critical_value(n, m, df, j.level)
    j.p_value = stats.psi_p_value(j.score, n, m, df)


def _ref_boxes(ref: DetectionReference) -> int:
    return int(sum(ref.score_hist))


def _ref_frames(reference: ReferenceStats, ref: DetectionReference) -> int:
    frames = int(sum(ref.count_hist))
    return min(frames, reference.n) if reference.n else frames


def count_drift(reference: ReferenceStats, window: WindowCounts, config: DriftConfig,
                alpha: float) -> DriftResult:
    """PSI of frames by detections per frame; one value per frame, so ``n = frames``."""
    j = _Judged("psi", floor=config.psi_floor, level=alpha, alpha=alpha)
    found = _parts(reference, window, j)
    if found:
        ref, det = found
        _same_edges(det.count_edges, ref.count_edges, "detection count")
        j.units = det.frames
        _psi(j, det.count_hist, np.asarray(ref.count_hist), min(int(det.count_hist.sum()),
                                                                det.frames),
             _ref_frames(reference, ref), config)
    return _result("det_count", window, config, j)


def _box_sizes(config: DriftConfig, ref: DetectionReference, det: DetectionCounts
               ) -> tuple[int, int]:
    if config.sample_unit == "value":  # naive: every box a sample (kept to show it cries wolf)
        return det.detections, _ref_boxes(ref)
    n = box_sample_size(det.count_edges, det.count_hist, det.detections)
    m = box_sample_size(ref.count_edges, ref.count_hist, _ref_boxes(ref))
    return n, m


def _box_hist_drift(kind: str, edges: str, hist: str, reference: ReferenceStats,
                    window: WindowCounts, config: DriftConfig, alpha: float) -> DriftResult:
    j = _Judged("psi", floor=config.psi_floor, level=alpha, alpha=alpha)
    found = _parts(reference, window, j)
    if found:
        ref, det = found
        _same_edges(getattr(det, edges), getattr(ref, edges), kind)
        n, m = _box_sizes(config, ref, det)
        j.units = det.frames
        _psi(j, getattr(det, hist), np.asarray(getattr(ref, hist)), n, m, config)
    return _result(kind, window, config, j)


def score_drift(reference: ReferenceStats, window: WindowCounts, config: DriftConfig,
                alpha: float) -> DriftResult:
    """PSI of the detections' score histogram (``n``: effective frames, see module doc)."""
    return _box_hist_drift("det_score", "score_edges", "score_hist", reference, window, config,
                           alpha)


def area_drift(reference: ReferenceStats, window: WindowCounts, config: DriftConfig,
               alpha: float) -> DriftResult:
    """PSI of the detections' relative box areas (``n``: effective frames)."""
    return _box_hist_drift("det_area", "area_edges", "area_hist", reference, window, config,
                           alpha)


def class_drift(reference: ReferenceStats, window: WindowCounts, config: DriftConfig,
                alpha: float) -> DriftResult:
    """JS distance of the detected class mix from the reference's (``n``: effective frames)."""
    j = _Judged("js_distance", floor=config.js_floor, level=alpha, alpha=alpha)
    found = _parts(reference, window, j)
    if found and (not found[0].class_distribution or _ref_boxes(found[0]) <= 0):
        j.missing = "the reference found no detections to take a class mix from"
    elif found:
        ref, det = found
        n, m = _box_sizes(config, ref, det)
        size = max(len(ref.class_distribution), len(det.class_counts))
        observed, expected = np.zeros(size), np.zeros(size)
        observed[:len(det.class_counts)] = det.class_counts
        expected[:len(ref.class_distribution)] = np.asarray(ref.class_distribution) * m
        j.units, j.n_raw, j.m_raw, j.n_eff, j.m_eff = (det.frames, det.detections,
                                                       _ref_boxes(ref), n, m)
        if n > 0 and observed.sum() > 0:
            df = stats.degrees_of_freedom(observed, expected)
            j.score = stats.js_distance(observed, expected,
                                        float(stats.smoothing_epsilon(config.smoothing, n, m)))
            j.critical = stats.js_critical_value(n, m, df, j.level)
            j.p_value = stats.js_p_value(j.score, n, m, df)
        else:
            j.missing = "the window found no detections"
    return _result("det_class", window, config, j)
