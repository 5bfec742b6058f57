"""The demo's task plug-ins: the registry, each task's settings and shifts, the detector's
frames, answers, mAP and example frame, the recovery verdict."""

from __future__ import annotations

import json
import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from edge_agent.errors import EdgekitError
from edge_agent.tasks.detection import Detections
from edgekit.demo.settings import for_size
from edgekit.demo.stream import Labels, Observation
from edgekit.demo.tasks import DEMO_TASKS, task_for
from edgekit.demo.tasks.base import Answer
from edgekit.demo.tasks.detection import frame_pools, map50, truth_rows
from edgekit.demo.tasks.frames import example_sections, found_digits, png
from edgekit.demo.tasks.parse import answer_detections


@pytest.mark.parametrize("name", sorted(DEMO_TASKS))
@pytest.mark.parametrize("size", ["full", "small"])
def test_every_task_has_both_sizes_and_valid_defaults(name, size, tmp_path):
    s = for_size(size, task=name, out=tmp_path)
    task = task_for(name)
    assert s.task == name and s.shift == task.default_shift and s.arch == task.default_arch
    assert set(task.trigger_kinds) <= {"input", "output", "confidence"}
    assert s.min_recovered > 0 and task.lines and task.retrain_module.startswith("examples.")


def test_an_unknown_task_is_one_line():
    with pytest.raises(EdgekitError, match=r"^unknown demo task 'segmentation'; choose one of "
                                           r"classification, detection$"):
        for_size("small", task="segmentation")


def test_a_shift_of_another_task_is_refused():
    with pytest.raises(EdgekitError, match="unknown shift 'invert' for the detection demo; "
                                           "choose one of dim, noise"):
        for_size("small", task="detection", shift="invert")


@pytest.fixture(scope="module")
def pools():
    return frame_pools("dim")


def test_frame_pools_hold_fresh_frames_and_their_boxes(pools):
    xs, truths = pools.get("stream", False)
    fresh, fresh_truths = pools.get("fresh", True)
    assert xs.shape[1:] == (1, 96, 96) and xs.dtype == np.float32 and len(truths) == len(xs)
    assert all(1 <= len(t) <= 4 and all(len(r) == 5 for r in t) for t in truths)
    assert len(fresh) == len(fresh_truths) and fresh.shape[1:] == (1, 96, 96)
    # the shift dims the frame: the [0, 1] image underneath is darker on average
    plain, _ = pools.get("fresh", False)
    assert fresh.mean() < plain.mean()
    json.dumps(truths[:3])  # the labelling stand-in writes them as JSON


def test_truth_rows_drop_padding():
    block = np.array([[3, 1, 2, 10, 12], [-1, 0, 0, 0, 0]], np.float32)
    assert truth_rows(block) == [[3.0, 1.0, 2.0, 10.0, 12.0]]


def _obs(truth, found, device="pi"):
    return Observation(0.0, device, truth, found, 0.9, "1", True, "stream")


def test_map50_scores_detections_against_the_true_boxes():
    truth = [[1, 10, 10, 30, 30], [7, 50, 50, 70, 74]]
    perfect = Detections(np.array([[10, 10, 30, 30], [50, 50, 70, 74]], np.float32),
                         np.array([0.9, 0.8], np.float32), np.array([1, 7]))
    half = Detections(perfect.boxes[:1], perfect.scores[:1], perfect.classes[:1])
    assert map50([_obs(truth, perfect)] * 3) == pytest.approx(1.0)
    assert 0.3 < map50([_obs(truth, half)] * 3) < 0.7
    assert map50([_obs(truth, Detections.empty())]) == 0.0 and map50([]) is None
    assert found_digits(truth, perfect) == 2 and found_digits(truth, half) == 1


def test_answers_of_the_agent_read_into_detections():
    row = {"box": [1.0, 2.0, 11.0, 12.0], "score": 0.7, "class": 4, "label": "4"}
    one = answer_detections({"detections": [row], "model": {"version": "1"}})
    assert one.classes.tolist() == [4] and one.boxes.shape == (1, 4)
    batch = answer_detections({"images": [{"detections": [row, row]}]})
    assert len(batch) == 2 and len(answer_detections({"detections": []})) == 0


def test_labels_keep_boxes_as_json(tmp_path):
    labels = Labels()
    labels.add(np.zeros((1, 1, 4, 4), np.float32), [[1.0, 0.0, 0.0, 2.0, 2.0]])
    doc = json.loads(labels.save(tmp_path / "labels.json").read_text())
    assert list(doc.values()) == [[[1.0, 0.0, 0.0, 2.0, 2.0]]]


def test_png_is_a_valid_grayscale_image():
    data = png(np.linspace(0, 1, 6 * 4).reshape(4, 6))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour) == (6, 4, 8, 0)
    idat = data.index(b"IDAT")
    size = struct.unpack(">I", data[idat - 4:idat])[0]
    assert len(zlib.decompress(data[idat + 4:idat + 4 + size])) == 4 * (6 + 1)


def test_the_example_frame_shows_both_versions(pools):
    xs, truths = pools.get("fresh", True)
    truth = truths[0]
    boxes = np.array([r[1:] for r in truth], np.float32)
    v2 = Detections(boxes, np.full(len(truth), 0.9, np.float32),
                    np.array([int(r[0]) for r in truth]))
    demo = SimpleNamespace(facts={"example": {
        "device": "pi-kitchen", "frame": xs[0], "truth": truth,
        "v1": Answer(Detections.empty(), 0.0, "1"), "v2": Answer(v2, 0.9, "2")}})
    html = "".join(example_sections(demo))
    assert html.count("<svg") == 2 and "data:image/png;base64," in html
    assert f"v1 (model v1): 0 of {len(truth)} digits found, 0 boxes" in html
    assert f"v2 (model v2): {len(truth)} of {len(truth)} digits found" in html
    assert example_sections(SimpleNamespace(facts={})) == []


@pytest.mark.parametrize(("after", "ok"), [(0.85, True), (0.7, True), (0.6, False)])
def test_recovery_is_an_absolute_level_or_a_share_of_the_drop(after, ok, tmp_path):
    s = for_size("small", task="detection", out=tmp_path)  # 0.8, or 80 % of the drop
    verdict = task_for("detection").recovery(s, 0.72, 0.2, after)
    assert (verdict.failure is None) == ok
    assert verdict.share_of_drop == round((after - 0.2) / (0.72 - 0.2), 4)
    if not ok:
        assert "below 0.8 and made up" in verdict.failure


def test_the_classifier_pools_and_score_are_todays(tmp_path):
    task = task_for("classification")
    pools = task.pools(for_size("small", out=tmp_path))
    xs, ys = pools.get("stream", True)
    assert xs.shape[1:] == (1, 32, 32) and all(isinstance(y, int) for y in ys)
    json.dumps(ys)
    obs = [_obs(3, 3), _obs(3, 5)]
    assert task.score(obs) == 0.5 and task.figures(obs) == {"metric": 0.5, "confidence": 0.9}


@pytest.mark.parametrize(("args", "message"), [
    (["--task", "segmentation"], "error: unknown demo task 'segmentation'; choose one of "
                                 "classification, detection"),
    (["--task", "detection", "--shift", "rotate"], "error: unknown shift 'rotate' for the "
                                                   "detection demo; choose one of dim, noise"),
])
def test_demo_command_bad_task_or_shift_is_one_line(args, message, tmp_path, capsys):
    from tests.cli import run_main

    assert run_main("demo", *args, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err.strip()
    assert err == message and not (tmp_path / "out").exists()


def test_the_detector_is_trained_once_then_cached(tmp_path, monkeypatch):
    import examples.digit_boxes.data as boxes

    real = boxes.loaders
    monkeypatch.setattr(boxes, "loaders", lambda: real(train=64, calibration=16, validation=32))
    s = for_size("small", task="detection", out=tmp_path, epochs=1)
    task = task_for("detection")
    fig: dict = {}
    weights, line = task.train(s, fig)
    assert weights.is_file() and not fig["cached"] and 0 <= fig["validation_map50"] <= 1
    assert line.startswith("digit_detector baseline: validation mAP@0.5 ")
    again: dict = {}
    assert task.train(s, again)[0] == weights and again["cached"]
    assert again["validation_map50"] == fig["validation_map50"]
