"""The digit-boxes detection example: its data set, its detector's output contract, and its
training and evaluation steps (on small splits; the full training is train.py's job)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from compress.tasks.detection import detections_of
from examples.digit_boxes import data as boxes_data
from examples.digit_boxes.models import IMAGE_SIZE, anchor_points, digit_detector, train_loss
from examples.digit_boxes.train import detection_spec, evaluate_map, train

SMALL = {"train": 96, "calibration": 8, "validation": 32}


@pytest.fixture(scope="module")
def small_splits():
    return boxes_data.splits(0, **SMALL)


def test_splits_are_deterministic(small_splits):
    again = boxes_data.splits.__wrapped__(0, **SMALL)     # rebuilt, not the cached copy
    for name, (x, y) in small_splits.items():
        assert torch.equal(x, again[name][0]) and torch.equal(y, again[name][1])
    other = boxes_data.splits.__wrapped__(1, **SMALL)
    assert not torch.equal(small_splits["train"][0], other["train"][0])


def test_labels_follow_the_detection_contract(small_splits):
    for name, (x, y) in small_splits.items():
        assert x.shape == (SMALL[name], 1, IMAGE_SIZE, IMAGE_SIZE) and x.dtype == torch.float32
        assert y.shape == (SMALL[name], boxes_data.MAX_DIGITS, 5) and y.dtype == torch.float32
        valid = y[..., 0] >= 0
        assert valid[:, 0].all()                                  # at least one digit each
        assert (valid[:, :-1] | ~valid[:, 1:]).all()              # padding rows come last
        assert (y[~valid] == torch.tensor([-1.0, 0, 0, 0, 0])).all()
        classes = y[..., 0][valid]
        assert ((classes >= 0) & (classes <= 9) & (classes == classes.round())).all()
        box = y[valid][:, 1:]
        assert (box >= 0).all() and (box <= IMAGE_SIZE).all()
        assert (box[:, 2] > box[:, 0]).all() and (box[:, 3] > box[:, 1]).all()
        sides = box[:, 2:] - box[:, :2]
        assert sides.max() <= boxes_data.DIGIT_SIZES[1]


def test_boxes_are_tight_around_the_pasted_digits():
    """One digit on a plain canvas: its box is exactly the ink above the clutter."""
    digit = np.zeros((1, 64))
    digit[0, [19, 20, 27, 28, 35, 36, 43, 44]] = 16.0     # a bar, columns 3-4, rows 2-5
    x, y = boxes_data.make_canvases(20, digit, np.array([7]), seed=3)
    for canvas, rows in zip(x[:, 0].numpy(), y.numpy(), strict=True):
        for c, x1, y1, x2, y2 in rows[rows[:, 0] >= 0]:
            assert c == 7
            x1, y1, x2, y2 = int(x1), int(y1), int(x2), int(y2)
            inside = canvas[y1:y2, x1:x2]
            assert inside.max() > 0.5                                  # ink inside the box
            assert inside[0].max() > boxes_data.INK_THRESHOLD * 0.7    # and on its edges
            assert inside[-1].max() > boxes_data.INK_THRESHOLD * 0.7
            assert inside[:, 0].max() > boxes_data.INK_THRESHOLD * 0.7
            assert inside[:, -1].max() > boxes_data.INK_THRESHOLD * 0.7


def test_validation_digits_are_never_seen_in_training():
    parts = boxes_data.digit_indices(0)
    sets = {name: set(idx.tolist()) for name, idx in parts.items()}
    assert not sets["train"] & sets["validation"]
    assert not sets["train"] & sets["calibration"]
    assert not sets["calibration"] & sets["validation"]
    assert sum(len(s) for s in sets.values()) == len(load_digits().target)


def test_detector_outputs_the_yolov8_layout(small_splits):
    x = small_splits["validation"][0][:4]
    model = digit_detector().eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (4, 4 + 10, 180)
    assert len(anchor_points()[0]) == 180
    assert (out >= 0).all() and (out <= 1).all()          # normalised boxes and sigmoid scores
    # the box (cx, cy, w, h) stays inside the image
    for centre, side in ((out[:, 0], out[:, 2]), (out[:, 1], out[:, 3])):
        assert (centre - side / 2 >= -1e-6).all() and (centre + side / 2 <= 1 + 1e-6).all()


def test_perfect_outputs_score_a_perfect_map(small_splits):
    """evaluate_map on outputs that say exactly the labels gives mAP 1 (the deployed
    post-processing finds every labelled box)."""
    _, y = small_splits["validation"]
    outputs = torch.zeros(len(y), 14, 180)
    for b, rows in enumerate(y):
        for k, (c, x1, y1, x2, y2) in enumerate(rows.tolist()):
            if c >= 0:
                outputs[b, :4, k] = torch.tensor([x1 + x2, y1 + y2, 2 * (x2 - x1),
                                                  2 * (y2 - y1)]) / (2 * IMAGE_SIZE)
                outputs[b, 4 + int(c), k] = 0.9

    class Oracle(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return outputs[x[:, 0, 0, 0].long()]

    index = torch.arange(len(y), dtype=torch.float32)[:, None, None, None].expand(-1, 1, 2, 2)
    scores = evaluate_map(Oracle(), index, y)
    assert scores["map_50"] == pytest.approx(1.0) and scores["map"] == pytest.approx(1.0)
    assert all(len(d) == int((rows[:, 0] >= 0).sum())
               for d, rows in zip(detections_of(outputs, detection_spec()), y, strict=True))


def test_a_short_training_lowers_the_loss(small_splits):
    torch.manual_seed(0)
    loaders = boxes_data.loaders(batch_size=16, seed=0, **SMALL)
    x, y = small_splits["train"]
    model = digit_detector()
    before = train_loss(model.eval()(x), y).item()
    log: list[float] = []
    train(model, loaders, epochs=2, seed=0, log=log)
    with torch.no_grad():
        after = train_loss(model(x), y).item()
    assert len(log) == 2 and log[1] < log[0]
    assert after < before


def test_data_returns_the_documented_keys():
    doc = boxes_data.data()
    assert set(doc) == {"train", "calibration", "validation", "labels", "preprocessing", "task"}
    assert doc["labels"] == [str(i) for i in range(10)]
    assert doc["preprocessing"]["steps"][-1] == {"op": "normalize", "mean": [boxes_data.MEAN],
                                                 "std": [boxes_data.STD]}
    detection = doc["task"]["detection"]
    assert doc["task"]["kind"] == "detection" and detection["layout"] == "yolov8"
    assert detection["num_classes"] == 10 and detection["input_size"] == [96, 96]
    assert detection["normalized_boxes"] is True
    for name, size in boxes_data.SIZES.items():
        images, labels = next(iter(doc[name]))
        assert len(doc[name].dataset) == size
        assert images.shape[1:] == (1, 96, 96) and labels.shape[1:] == (4, 5)


def test_the_task_block_is_a_valid_detection_spec():
    task = pytest.importorskip("edge_agent.contracts.task")
    spec = task.DetectionSpec.from_dict(boxes_data.TASK["detection"])
    assert spec.num_classes == 10 and spec.normalized_boxes


def test_retraining_labels_the_collected_frames_once_each(tmp_path):
    import json

    from edgekit.demo.stream import input_key
    from examples.digit_boxes.retrain import labelled_frames, padded

    frames = np.random.default_rng(0).random((3, 1, 1, 96, 96)).astype(np.float32)
    np.savez(tmp_path / "samples.npz", inputs=np.concatenate([frames, frames[:1]]))
    truth = {input_key(frames[0]): [[3, 1, 2, 20, 30]], input_key(frames[1]): []}
    (tmp_path / "labels.json").write_text(json.dumps(truth))
    x, y, counts = labelled_frames(tmp_path / "samples.npz", tmp_path / "labels.json")
    assert counts == {"collected": 4, "labelled": 2}
    assert x.shape == (2, 1, 96, 96) and y.shape == (2, boxes_data.MAX_DIGITS, 5)
    assert y[0, 0].tolist() == [3, 1, 2, 20, 30] and y[0, 1:, 0].tolist() == [-1] * 3
    assert padded([])[:, 0].tolist() == [-1] * 4
    empty = labelled_frames(tmp_path / "missing.npz", tmp_path / "labels.json")
    assert empty[2] == {"collected": 0, "labelled": 0}


def test_retraining_splits_keep_a_holdout_out_of_training(tmp_path):
    from pathlib import Path

    from examples.digit_boxes.retrain import RetrainConfig, make_splits
    from examples.digit_boxes.retrain_data import ENV, data, read, write

    x = torch.rand(10, 1, 96, 96)
    y = torch.full((10, boxes_data.MAX_DIGITS, 5), -1.0)
    cfg = RetrainConfig(labels=Path("l"), out=tmp_path, key=Path("k"), api="", token_file=Path(
        "t"), fleet="f", profiles=[], weights=Path("w"), replay=20, sample_weight=2)
    parts = make_splits(cfg, (x, y))
    assert len(parts["holdout"][1]) == 2 and len(parts["train"][1]) == 8 * 2 + 20
    held = {input_key_of(t) for t in parts["holdout"][0]}
    assert not held & {input_key_of(t) for t in parts["train"][0]}
    assert held <= {input_key_of(t) for t in parts["validation"][0]}
    path = write(tmp_path / "d.npz", {k: v for k, v in parts.items() if k != "holdout"})
    assert torch.equal(read(path)["test"][0], parts["test"][0])
    import os

    os.environ[ENV] = str(path)
    try:
        got = data()
    finally:
        del os.environ[ENV]
    assert got["task"]["kind"] == "detection" and set(got) >= {"train", "calibration", "test"}


def input_key_of(t: torch.Tensor) -> str:
    from edgekit.demo.stream import input_key

    return input_key(t.numpy())


def test_the_hybrid_detector_runs_attention_over_its_stride_16_map(small_splits):
    from compress.attention import Cut, blocks, cut
    from examples.digit_boxes.models import digit_detector_hybrid, sincos_positions

    torch.manual_seed(0)
    x = small_splits["validation"][0][:2]
    model = digit_detector_hybrid().eval()
    with torch.no_grad():
        out = model(x)
        model.encoder.positions.zero_()
        unplaced = model(x)
    assert out.shape == (2, 4 + 10, 180)
    assert not torch.allclose(out, unplaced)  # the tokens know where they are
    positions = sincos_positions(6, 192)
    assert positions.shape == (1, 36, 192) and len(set(map(tuple, positions[0].tolist()))) == 36
    assert len(blocks(model)) == 2            # the encoder layers, found by attention pruning
    pruned = cut(model, Cut(share=0.5))
    assert [b.attention.num_heads for b in blocks(pruned)] == [2, 2]
    with torch.no_grad():
        assert pruned(x).shape == out.shape
