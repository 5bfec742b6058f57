"""Digit boxes: a detection data set for ``edgekit build --data examples/digit_boxes/data.py:data``.

Each sample is a 1x96x96 grayscale canvas: low-amplitude noise, a few clutter strokes
and blobs that are not digits, and 1 to 4 of scikit-learn's bundled 8x8 digits (no
download) scaled to [0, 1], resized (bilinear) to 14..36 px and pasted where they
overlap earlier ones by IoU < 0.3 (and cover under
half of the smaller). Boxes are tight around the pasted digit's ink.

The digit images are split with a fixed seed into train, calibration and validation
index sets first, so validation canvases hold only digit images never seen in training.
Everything is generated from a seed: the same call gives the same tensors.

Labels follow edgekit's detection contract: a float tensor ``[N, MAX_DIGITS, 5]`` per
split, rows ``(class, x1, y1, x2, y2)`` in input pixels, ``class = -1`` (and zero
coordinates) for padding rows.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

IMAGE_SIZE = 96
MAX_DIGITS = 4
DIGIT_SIZES = (14, 36)           # side of a pasted digit in pixels, inclusive
ASPECT_JITTER = 0.15             # width = height * uniform(1 - j, 1 + j)
MAX_OVERLAP_IOU = 0.3
INK_THRESHOLD = 0.1              # a resized digit pixel above this counts for its tight box
MEAN, STD = 0.08, 0.15           # of the [0, 1] train canvases (0.084 / 0.148), rounded
VALIDATION_FRACTION, CALIBRATION_FRACTION = 0.25, 0.1
SIZES = {"train": 3000, "calibration": 256, "validation": 400}
LABELS = [str(i) for i in range(10)]
PREPROCESSING = {
    "source": f"{IMAGE_SIZE}x{IMAGE_SIZE} grayscale canvas, values 0..1",
    "steps": [{"op": "normalize", "mean": [MEAN], "std": [STD]}],
    "layout": "NCHW", "dtype": "float32",
}
TASK = {"kind": "detection", "detection": {
    "layout": "yolov8", "num_classes": len(LABELS), "input_size": [IMAGE_SIZE, IMAGE_SIZE],
    "labels": LABELS, "score_threshold": 0.25, "iou_threshold": 0.45, "max_detections": 20,
    "normalized_boxes": True}}


def digit_indices(seed: int = 0) -> dict[str, np.ndarray]:
    """Disjoint indices into ``load_digits`` for train, calibration and validation."""
    order = np.random.default_rng(seed).permutation(1797)   # len(load_digits().target)
    n_val = int(len(order) * VALIDATION_FRACTION)
    n_cal = int(len(order) * CALIBRATION_FRACTION)
    return {"validation": order[:n_val], "calibration": order[n_val:n_val + n_cal],
            "train": order[n_val + n_cal:]}


def _overlaps(box: np.ndarray, boxes: np.ndarray) -> bool:
    """Whether xyxy ``box`` overlaps any of ``boxes`` [K, 4] by IoU >= MAX_OVERLAP_IOU, or
    covers half of the smaller one (a small digit inside a big one has a low IoU)."""
    wh = np.clip(np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area, areas = np.prod(box[2:] - box[:2]), np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    iou = inter / (area + areas - inter)
    return bool((iou >= MAX_OVERLAP_IOU).any() or (inter >= 0.5 * np.minimum(area, areas)).any())


def _clutter(rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Noise plus 2..5 short strokes and small blobs, as a [96, 96] canvas in [0, 1]."""
    ys, xs = grid
    canvas = rng.uniform(0.0, 0.08, (IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    for _ in range(rng.integers(2, 6)):
        p = rng.uniform(0, IMAGE_SIZE, 2)
        amplitude = rng.uniform(0.25, 0.7)
        if rng.random() < 0.6:   # a short straight stroke, 3..12 px long, ~1-2 px thick
            angle, length = rng.uniform(0, np.pi), rng.uniform(3, 12)
            d = np.array([np.cos(angle), np.sin(angle)])
            t = np.clip((xs - p[0]) * d[0] + (ys - p[1]) * d[1], 0, length)
            dist = np.hypot(xs - p[0] - t * d[0], ys - p[1] - t * d[1])
            ink = np.clip(1.0 - dist / rng.uniform(0.8, 1.6), 0, 1)
        else:                    # a round blob, radius 1..3 px
            ink = np.exp(-((xs - p[0]) ** 2 + (ys - p[1]) ** 2) / (2 * rng.uniform(1, 3) ** 2))
        canvas = np.maximum(canvas, amplitude * ink)
    return canvas


def _canvas(rng: np.random.Generator, digits: torch.Tensor, classes: np.ndarray,
            grid: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One canvas [96, 96] in [0, 1] and its labels [MAX_DIGITS, 5] (padding class -1)."""
    canvas = _clutter(rng, grid)
    labels = np.zeros((MAX_DIGITS, 5), np.float32)
    labels[:, 0] = -1
    placed: list[np.ndarray] = []    # the pasted patches' extents, for the overlap check
    for _ in range(rng.integers(1, MAX_DIGITS + 1)):
        pick = rng.integers(len(classes))
        h = int(rng.integers(DIGIT_SIZES[0], DIGIT_SIZES[1] + 1))
        w = int(np.clip(round(h * rng.uniform(1 - ASPECT_JITTER, 1 + ASPECT_JITTER)),
                        DIGIT_SIZES[0], DIGIT_SIZES[1]))
        for _try in range(20):
            x = int(rng.integers(0, IMAGE_SIZE - w + 1))
            y = int(rng.integers(0, IMAGE_SIZE - h + 1))
            extent = np.array([x, y, x + w, y + h], np.float32)
            if not placed or not _overlaps(extent, np.stack(placed)):
                break
        else:
            continue
        patch = F.interpolate(digits[pick][None, None], size=(h, w), mode="bilinear",
                              align_corners=False)[0, 0].numpy() * rng.uniform(0.7, 1.0)
        canvas[y:y + h, x:x + w] = np.maximum(canvas[y:y + h, x:x + w], patch)
        rows = np.flatnonzero((patch > INK_THRESHOLD).any(axis=1))
        cols = np.flatnonzero((patch > INK_THRESHOLD).any(axis=0))
        labels[len(placed)] = (classes[pick], x + cols[0], y + rows[0],
                               x + cols[-1] + 1, y + rows[-1] + 1)
        placed.append(extent)
    return canvas, labels


def make_canvases(count: int, digit_images: np.ndarray, digit_classes: np.ndarray,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` raw canvases [count, 1, 96, 96] in [0, 1] and labels [count, 4, 5].

    ``digit_images`` are 8x8 (values 0..16), the only digits these canvases paste.
    """
    rng = np.random.default_rng(seed)
    digits = torch.as_tensor(np.asarray(digit_images, np.float32) / 16.0).reshape(-1, 8, 8)
    grid = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5   # pixel centres
    made = [_canvas(rng, digits, digit_classes, (grid[0], grid[1])) for _ in range(count)]
    images = torch.as_tensor(np.stack([c for c, _ in made]).astype(np.float32))[:, None]
    return images, torch.as_tensor(np.stack([lab for _, lab in made]))


def normalize(canvases: torch.Tensor) -> torch.Tensor:
    """Raw [0, 1] canvases -> the model's input (PREPROCESSING's one step)."""
    return (canvases - MEAN) / STD


@functools.lru_cache(maxsize=4)
def splits(seed: int = 0, train: int = SIZES["train"], calibration: int = SIZES["calibration"],
           validation: int = SIZES["validation"]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(normalised inputs, labels) for train, calibration and validation; cached per process.

    Treat the tensors as read-only: every caller with the same arguments shares them.
    """
    from sklearn.datasets import load_digits

    images, classes = load_digits(return_X_y=True)
    sizes = {"train": train, "calibration": calibration, "validation": validation}
    out = {}
    for i, (name, idx) in enumerate(digit_indices(seed).items()):
        x, y = make_canvases(sizes[name], images[idx], classes[idx], seed * 1000 + i)
        out[name] = (normalize(x), y)
    return out


def loaders(batch_size: int = 32, seed: int = 0, **sizes: int) -> dict[str, DataLoader]:
    """The DataLoaders of the three splits (train shuffled with a seeded generator)."""
    parts = splits(seed, **sizes)
    generator = torch.Generator().manual_seed(seed)
    return {name: DataLoader(TensorDataset(*tensors), batch_size=batch_size,
                             shuffle=name == "train",
                             generator=generator if name == "train" else None)
            for name, tensors in parts.items()}


def data() -> dict[str, Any]:
    """The ``--data`` function: loaders, labels, preprocessing and the detection task."""
    return {**loaders(), "labels": LABELS, "preprocessing": PREPROCESSING, "task": TASK}
