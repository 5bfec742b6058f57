"""Device-side post-processing: NMS against a brute-force reference, the fast candidate
selection against full decoding, boxes back in the caller's pixels, per-request options."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.contracts.task import DetectionSpec
from edge_agent.inputs import InputError
from edge_agent.tasks import detection
from edge_agent.tasks.detection import iou_matrix, nms, postprocess
from edge_agent.tasks.geometry import Letterbox, Resize, geometric_steps, to_caller_pixels
from edge_agent.tasks.layouts import FAST_SELECT, LAYOUTS, candidates
from edge_agent.tasks.options import PredictOptions


def reference_nms(boxes, scores, classes, iou, limit):
    """Greedy per-class NMS, one box at a time, as written in textbooks."""
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        overlaps = [iou_matrix(boxes[i], boxes[k])[0, 0] for k in keep
                    if classes[k] == classes[i]]
        if all(o <= iou for o in overlaps):
            keep.append(int(i))
        if len(keep) == limit:
            break
    return np.asarray(keep, dtype=np.int64)


def random_boxes(rng, n, classes, size=640.0, spread=(10, 200)):
    centre = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(*spread, (n, 2))
    boxes = np.concatenate([centre - wh / 2, centre + wh / 2], 1).astype(np.float32)
    return boxes, rng.uniform(0, 1, n).astype(np.float32), rng.integers(0, classes, n)


# 0-160: the IoU matrix; 161-2000 across classes: same-class pairs; one crowded class
# past PAIRS_MAX: class by class, walking the kept boxes
@pytest.mark.parametrize(("n", "classes"), [(0, 3), (1, 3), (7, 2), (160, 5), (161, 5),
                                            (900, 40), (2000, 80), (1200, 1)])
@pytest.mark.parametrize("limit", [5, 300])
def test_nms_keeps_what_greedy_per_class_nms_keeps(n, classes, limit, monkeypatch):
    if n == 1200:
        monkeypatch.setattr(detection, "PAIRS_MAX", 10_000)
    rng = np.random.default_rng(n + classes)
    boxes, scores, cls = random_boxes(rng, n, classes, spread=(40, 300))
    assert np.array_equal(nms(boxes, scores, cls, 0.45, limit),
                          reference_nms(boxes, scores, cls, 0.45, limit))


def test_boxes_of_two_classes_never_suppress_each_other():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 9.9]], np.float32)
    kept = nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 1, 0]), 0.5, 10)
    assert kept.tolist() == [0, 1]


def yolov8_output(rng, classes=80, boxes=8400, over=40):
    out = np.zeros((1, 4 + classes, boxes), np.float32)
    out[0, :2] = rng.uniform(0, 640, (2, boxes))
    out[0, 2:4] = rng.uniform(5, 300, (2, boxes))
    out[0, 4:] = rng.beta(0.3, 30, (classes, boxes))
    picked = rng.choice(boxes, over, replace=False)
    out[0, 4 + rng.integers(0, classes, over), picked] = rng.uniform(0.25, 0.95, over)
    return out


def test_the_fast_yolov8_selection_matches_decoding_every_box():
    assert "yolov8" in FAST_SELECT
    spec = DetectionSpec(layout="yolov8", num_classes=80, input_size=[640, 640])
    out = yolov8_output(np.random.default_rng(3))
    fast = candidates([out], spec, 0.25)[0]
    boxes, scores = LAYOUTS["yolov8"].decode([out], spec)
    best = scores[0].max(axis=1)
    keep = np.flatnonzero(best >= 0.25)
    assert np.allclose(fast.boxes, boxes[0][keep]) and np.array_equal(fast.scores, best[keep])
    assert np.array_equal(fast.classes, scores[0][keep].argmax(axis=1)) and fast.finite


def test_nan_outputs_are_reported_not_answered():
    spec = DetectionSpec(layout="yolov8", num_classes=80, input_size=[640, 640])
    out = yolov8_output(np.random.default_rng(4))
    out[0, 10, 17] = np.nan
    assert not postprocess([out], spec)[0].finite


def test_thresholds_and_the_maximum_can_be_overridden():
    spec = DetectionSpec(layout="yolov8", num_classes=80, input_size=[640, 640],
                         max_detections=100)
    out = yolov8_output(np.random.default_rng(5), over=60)
    default = postprocess([out], spec)[0]
    strict = postprocess([out], spec, score_threshold=0.6)[0]
    few = postprocess([out], spec, max_detections=3)[0]
    loose = postprocess([out], spec, iou_threshold=0.95)[0]
    assert len(strict) < len(default) and strict.scores.min() >= 0.6
    assert len(few) == 3 and np.array_equal(few.scores, default.scores[:3])
    assert len(loose) >= len(default)


def test_letterbox_boxes_come_back_in_the_callers_pixels():
    op = Letterbox((64, 64), value=0.5)
    image = np.zeros((3, 120, 200), np.float32)
    image[:, 30:90, 50:150] = 1.0  # a bright box x 50..150, y 30..90
    boxed = op.apply(image)
    # scale 0.32 (width-bound), 38 rows tall, 13 rows of padding above
    assert boxed.shape == (3, 64, 64) and boxed[0, 0, 0] == 0.5 and boxed[0, 13, 0] == 0.0
    rows, cols = np.nonzero(boxed[0] == 1.0)
    model_box = np.array([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]], np.float32)
    back = to_caller_pixels(model_box, [op], [64, 64], [120, 200])
    assert np.allclose(back, [[50, 30, 150, 90]], atol=200 / 64)


def test_resize_and_the_implicit_resize_scale_boxes_per_axis():
    box = np.array([[8, 16, 32, 48]], np.float32)
    expected = [[32, 32, 128, 96]]  # 256 wide (x4), 128 tall (x2)
    assert np.allclose(to_caller_pixels(box, [Resize((64, 64))], [64, 64], [128, 256]), expected)
    assert np.allclose(to_caller_pixels(box, [], [64, 64], [128, 256]), expected)


def test_only_geometric_steps_are_undone():
    ops = geometric_steps([{"op": "scale", "factor": 0.1}, {"op": "letterbox", "size": 64},
                           {"op": "normalize", "mean": [0.5], "std": [0.2]}])
    assert ops == [Letterbox((64, 64), 0.0)]


@pytest.mark.parametrize(("options", "error"), [
    ({"score_threshold": "2"}, "score_threshold must be a number between 0 and 1, got '2'"),
    ({"iou_threshold": "nan"}, "iou_threshold must be a number between 0 and 1"),
    ({"max_detections": "0"}, "max_detections must be a whole number from 1 to 10000"),
    ({"max_detections": 2.5}, "max_detections must be a whole number"),
    ({"image_size": "480"}, "image_size must be [height, width] in pixels"),
    ({"image_size": [480, -1]}, "image_size must be [height, width] in pixels"),
    ({"raw": "maybe"}, "raw must be true or false (1 or 0)"),
    ({"treshold": 0.5}, "unknown option 'treshold'; known: score_threshold"),
])
def test_bad_options_are_one_line_errors(options, error):
    with pytest.raises(InputError) as info:
        PredictOptions.parse(options)
    assert error in str(info.value) and "\n" not in str(info.value)


def test_options_parse_from_query_strings_and_python_values():
    opts = PredictOptions.parse({"score_threshold": "0.5", "max_detections": "7",
                                 "image_size": "480,640", "raw": "0"})
    assert opts == PredictOptions(score_threshold=0.5, max_detections=7, image_size=(480, 640))
    assert PredictOptions.parse({"image_size": (480, 640), "raw": True}).raw


def test_detection_options_are_refused_for_other_tasks():
    with pytest.raises(InputError, match="score_threshold is for detection bundles; this "
                                         "bundle's task is 'classification'"):
        PredictOptions(score_threshold=0.3).check_task("classification")
    PredictOptions(raw=True).check_task("generic")
