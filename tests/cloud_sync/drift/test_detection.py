"""Detector output drift (issue 19): frames are the sample unit, never boxes.

Windows are simulated frames whose boxes are correlated within a frame (one scene class,
scale and image quality per frame: ``cloud_sync.sim.detection``), counted into telemetry by
the agent's own counting function, read back as protocol messages and scored against the
reference. Measured false-alarm rates are compared with the nominal ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from cloud_sync.drift import DRIFT, INSUFFICIENT, DriftConfig, aggregate, drift_scores
from cloud_sync.drift.detection import box_sample_size
from cloud_sync.sim.detection import DetectorWorld, detection_reference, detection_window
from edge_agent import protocol as p
from edge_agent.contracts import ModelState

WORLD = DetectorWorld()
REFERENCE = detection_reference(WORLD)
DET_KINDS = ("det_count", "det_score", "det_class", "det_area")


def telemetry(window, seq: int = 1, device: str = "cam-1") -> p.Telemetry:
    """A 1.3 telemetry message carrying ``window`` (read back from its JSON)."""
    msg = p.Telemetry(device_id=device, seq=seq, ts=100.0 + seq, window_s=1.0,
                      model=ModelState(name="det", version="1"), inferences=window.frames,
                      errors=0, detection=window)
    return p.Telemetry.from_json(msg.to_json())


def window_counts(rng, frames: int, mode: str = "normal", messages: int = 2):
    msgs = [telemetry(detection_window(rng, WORLD, frames // messages, mode), seq=i + 1)
            for i in range(messages)]
    return aggregate(msgs, "cam-1", 0.0, 1e6)


def false_alarms(config: DriftConfig, windows: int, frames: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    hits = {k: 0 for k in DET_KINDS}
    any_hit = 0
    for _ in range(windows):
        results = drift_scores(REFERENCE, window_counts(rng, frames), config, "detection")
        for k in DET_KINDS:
            hits[k] += results[k].verdict == DRIFT
        any_hit += any(results[k].verdict == DRIFT for k in DET_KINDS)
    return {k: v / windows for k, v in hits.items()}, any_hit / windows


NO_FLOORS = {"psi_floor": 0.0, "js_floor": 0.0, "alpha": 0.05}


def test_frames_as_the_unit_keep_the_false_alarm_rate_under_alpha():
    """Floors off, alpha 0.05 over the window's five kinds: measured <= nominal."""
    per_kind, overall = false_alarms(DriftConfig(**NO_FLOORS), windows=300, frames=200)
    assert overall <= 0.05 + 0.02, (overall, per_kind)  # 0.02: three binomial s.e. of 300


def test_counting_boxes_as_samples_cries_wolf_on_correlated_boxes():
    """The same windows with every box a sample (``sample_unit="value"``): the box
    histograms alarm on most no-drift windows."""
    per_kind, overall = false_alarms(DriftConfig(**NO_FLOORS, sample_unit="value"),
                                     windows=100, frames=200)
    assert overall > 0.5, (overall, per_kind)
    assert per_kind["det_class"] > 0.3 and per_kind["det_count"] <= 0.05  # frames either way


def test_default_config_never_alarms_on_noise():
    per_kind, overall = false_alarms(DriftConfig(), windows=200, frames=100, seed=11)
    assert overall == 0.0, per_kind


@pytest.mark.parametrize(("mode", "kinds"), [
    ("drifted", {"det_class", "det_area", "det_score"}),
    ("none", {"det_count"}),
    ("everywhere", {"det_count", "det_score", "det_area"}),
])
def test_real_changes_are_detected(mode, kinds):
    results = drift_scores(REFERENCE, window_counts(np.random.default_rng(5), 200, mode),
                           DriftConfig(), "detection")
    drifting = {k for k in DET_KINDS if results[k].verdict == DRIFT}
    assert kinds <= drifting, {k: results[k].reason for k in DET_KINDS}


def test_a_detector_that_finds_nothing_has_no_box_histograms_to_judge():
    results = drift_scores(REFERENCE, window_counts(np.random.default_rng(5), 200, "none"),
                           DriftConfig(), "detection")
    assert results["det_count"].verdict == DRIFT and results["det_count"].n_eff == 200
    assert {results[k].verdict for k in ("det_score", "det_class", "det_area")} == {INSUFFICIENT}
    assert results["input"].verdict == INSUFFICIENT  # no input histograms in this world


def test_effective_frames_of_boxes():
    edges = [0, 1, 2, 3, 11]
    assert box_sample_size(edges, [0, 10, 0, 0], 10) == 10  # one box per frame: every box counts
    assert box_sample_size(edges, [0, 0, 0, 1], 10) == 1  # ten boxes of one frame: one sample
    # 5 frames of 2 boxes: D^2 / sum c^2 = 100 / 20
    assert box_sample_size(edges, [0, 0, 5, 0], 10) == 5
    assert box_sample_size(edges, [3, 0, 0, 0], 0) == 0


def test_sample_sizes_are_reported_in_frames():
    results = drift_scores(REFERENCE, window_counts(np.random.default_rng(2), 200),
                           DriftConfig(), "detection")
    score = results["det_score"]
    assert score.n_raw > score.n_eff and score.n_eff <= 200 - 0  # boxes > effective frames
    assert results["det_count"].n_eff == 200 and results["det_count"].m_eff == REFERENCE.n
    assert score.alpha == pytest.approx(DriftConfig().alpha / 5)


def test_generic_values_drift_per_output():
    from cloud_sync.drift.window import from_telemetry
    from edge_agent.contracts.reference import ReferenceStats, ValueReference
    from edge_agent.contracts.telemetry import ValueWindow
    from edge_agent.tasks.stats import value_counts, value_edges

    rng = np.random.default_rng(0)
    base = {"score": rng.normal(0, 1, 5000), "embed": rng.uniform(0, 1, 5000)}
    refs = [ValueReference(name=k, edges=value_edges(v), counts=value_counts(v, value_edges(v)),
                           mean=float(v.mean()), std=float(v.std())) for k, v in base.items()]
    ref = ReferenceStats(n=5000, values=refs)

    def window(shift: float):
        vals = {"score": rng.normal(shift, 1, 400), "embed": rng.uniform(0, 1, 400)}
        msg = p.Telemetry(device_id="g", seq=1, ts=1.0, window_s=1.0,
                          model=ModelState(name="g", version="1"), inferences=400, errors=0,
                          values=[ValueWindow(name=r.name, edges=r.edges,
                                              counts=value_counts(vals[r.name], r.edges))
                                  for r in refs])
        return drift_scores(ref, from_telemetry(p.Telemetry.from_json(msg.to_json())),
                            DriftConfig(), "generic")["values"]

    calm, moved = window(0.0), window(1.0)
    assert calm.verdict == "ok" and moved.verdict == DRIFT
    assert moved.channels[0].channel == 0 and moved.channels_drifting == 1  # "score" moved


def test_unknown_task_is_a_one_line_error():
    from cloud_sync.drift import DriftError

    with pytest.raises(DriftError, match="no drift scores for task 'segmentation'"):
        drift_scores(REFERENCE, window_counts(np.random.default_rng(1), 20), DriftConfig(),
                     "segmentation")


def test_detection_windows_pool_and_refuse_other_bins():
    from cloud_sync.drift import DriftError, pool
    from cloud_sync.drift.window import from_telemetry

    rng = np.random.default_rng(8)
    a, b = (detection_window(rng, WORLD, 30) for _ in range(2))
    pooled = pool([from_telemetry(telemetry(a, 1)), from_telemetry(telemetry(b, 2))], "fleet:x")
    det = pooled.tasks.detection
    assert det.frames == 60 and det.detections == sum(a.score_hist) + sum(b.score_hist)
    assert det.mean_score == pytest.approx((a.mean_score * sum(a.score_hist) + b.mean_score
                                            * sum(b.score_hist)) / det.detections)
    other = detection_window(rng, WORLD, 30)
    other.area_edges = [0.0, 0.5, 1.0]
    other.area_hist = [sum(other.area_hist), 0]
    with pytest.raises(DriftError, match="detection histograms on different bins"):
        pool([from_telemetry(telemetry(a, 1)), from_telemetry(telemetry(other, 3))], "fleet:x")


def test_a_classifier_window_scored_as_a_detector_is_insufficient_not_drift():
    """A task mix-up (a classifier's telemetry against a detector's reference) never alarms."""
    msg = p.Telemetry(device_id="c", seq=1, ts=1.0, window_s=1.0, inferences=500, errors=0,
                      model=ModelState(name="m", version="1"), class_counts={"1": 500})
    results = drift_scores(REFERENCE, aggregate([msg], "c", 0.0, 2.0), DriftConfig(),
                           "detection")
    assert {r.verdict for r in results.values()} == {INSUFFICIENT}
    assert results["det_count"].reason == "the window holds no detection counts"
