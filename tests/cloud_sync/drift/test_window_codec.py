"""``WindowCounts`` through JSON and back (the window rows ingest keeps): the same counts,
so the same scores, for a classifier's, a detector's and a generic model's windows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cloud_sync.drift import DriftConfig, aggregate, drift_scores, pool
from cloud_sync.drift.window import from_telemetry
from cloud_sync.drift.window_codec import from_doc, to_doc
from cloud_sync.sim.detection import detection_window
from edge_agent import protocol as p
from edge_agent.contracts import ModelState
from edge_agent.contracts.telemetry import ValueWindow
from tests.cloud_sync.drift.test_detection import REFERENCE, WORLD
from tests.cloud_sync.drift.test_detection import telemetry as detector_telemetry
from tests.cloud_sync.drift.test_window import telemetry


def _through_json(window):
    doc = json.loads(json.dumps(to_doc(window)))  # what the store gives back
    return from_doc(doc, window.scope, window.model_name, window.model_version, window.start,
                    window.end, window.devices)


def _same(a, b) -> None:
    for name in ("inferences", "messages", "input_inferences", "bin_edges", "class_counts",
                 "confidence_edges", "confidence_sum", "scope", "start", "end", "devices"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("input_counts", "confidence_counts"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or (x.dtype == y.dtype and np.array_equal(x, y)), name


def test_a_classifier_window_comes_back_exactly_and_pools():
    window = aggregate([telemetry(seq=i, ts=10.0 + i, mean=0.7 + i / 100) for i in range(5)],
                       "d1", 0.0, 60.0)
    back = _through_json(window)
    _same(window, back)
    assert back.confidence_mean == window.confidence_mean
    pooled = pool([back, _through_json(window)], "fleet:f")  # rows add up like windows
    assert pooled.inferences == 2 * window.inferences


def test_a_detector_window_comes_back_exactly_and_scores_the_same():
    rng = np.random.default_rng(4)
    window = aggregate([detector_telemetry(detection_window(rng, WORLD, 40), seq=i)
                        for i in range(1, 4)], "cam-1", 0.0, 1e6)
    back = _through_json(window)
    a, b = window.tasks.detection, back.tasks.detection
    assert (a.frames, a.empty_frames, a.score_sum) == (b.frames, b.empty_frames, b.score_sum)
    for name in ("count_hist", "score_hist", "class_counts", "area_hist"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert (a.count_edges, a.score_edges, a.area_edges) == (b.count_edges, b.score_edges,
                                                            b.area_edges)
    before = drift_scores(REFERENCE, window, DriftConfig(), "detection")
    after = drift_scores(REFERENCE, back, DriftConfig(), "detection")
    assert {k: r.to_dict() for k, r in before.items()} == {k: r.to_dict() for k, r in after.items()}


def test_a_generic_models_values_come_back_exactly():
    msg = p.Telemetry(device_id="g", seq=1, ts=1.0, window_s=1.0,
                      model=ModelState(name="g", version="1"), inferences=40, errors=0,
                      values=[ValueWindow(name="score", edges=[0.0, 0.5, 1.0],
                                          counts=[1, 20, 18, 1], mean=0.52)])
    window = from_telemetry(p.Telemetry.from_json(msg.to_json()))
    back = _through_json(window).tasks.values["score"]
    assert back.edges == (0.0, 0.5, 1.0) and back.counts.tolist() == [1, 20, 18, 1]
    assert (back.inferences, back.value_sum) == (40, pytest.approx(0.52 * 40))


def _messages():
    """Telemetry of each kind a window sums: classifier, detector, generic; one without
    confidence or input histograms; class counts with zeros and unsorted keys."""
    rng = np.random.default_rng(11)
    out = [telemetry(seq=i, ts=10.0 + i, mean=0.6 + i / 50,
                     classes={"7": i, "0": 3, "2": 0, "10": 5}) for i in range(4)]
    bare = telemetry(seq=9)
    bare.confidence, bare.input_hist = None, None
    out.append(bare)
    dets = [detector_telemetry(detection_window(rng, WORLD, 30), seq=i) for i in range(1, 4)]
    vals = [p.Telemetry.from_json(p.Telemetry(
        device_id="g", seq=i, ts=1.0, window_s=1.0, model=ModelState(name="g", version="1"),
        inferences=40, errors=0, values=[
            ValueWindow(name=n, edges=[0.0, 0.5, 1.0], counts=[i, 20, 18 - i, 1], mean=0.5)
            for n in ("b", "a")]).to_json()) for i in range(3)]
    return out, dets, vals


def test_the_plain_python_sums_equal_the_windows_sums():
    from functools import reduce

    from cloud_sync.drift.window_codec import add_docs, doc_of

    for group in _messages():
        for message in group:
            assert doc_of(message) == to_doc(from_telemetry(message))
        summed = reduce(add_docs, [doc_of(m) for m in group])
        pooled = to_doc(pool([from_telemetry(m) for m in group], "x"))
        assert summed == pooled


def test_the_plain_python_sums_refuse_what_pool_refuses():
    from cloud_sync.drift import DriftError
    from cloud_sync.drift.window_codec import add_docs, doc_of

    a, b = telemetry(seq=1), telemetry(seq=2, edges=[0.0, 0.25, 1.0])
    with pytest.raises(DriftError, match="input histograms on different bins"):
        pool([from_telemetry(a), from_telemetry(b)], "x")
    with pytest.raises(DriftError, match="input histograms on different bins"):
        add_docs(doc_of(a), doc_of(b))
