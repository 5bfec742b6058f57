"""Tiny real detector and two-output regressor for the build's task tests (seconds to train,
no downloads). Usable as user code, like ``tests/compress/tiny.py``:

- ``--model tests/compress/tiny_tasks.py:tiny_detector --data tests/compress/tiny_tasks.py:
  detection_data``: 32x32 images holding one or two squares, bright (class 0) or dark
  (class 1); the detector emits the ``yolov8`` layout ``[B, 4 + 2, 16]`` (a 4x4 grid,
  boxes normalised to the image size, sigmoid scores);
- ``--model ...:tiny_regressor --data ...:regression_data``: two outputs (the mean and the
  spread of each image's quadrants).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

SIZE, GRID, CLASSES, MAX_OBJECTS = 32, 4, 2, 2
STRIDE = SIZE // GRID
DETECTION_TASK = {"kind": "detection", "detection": {
    "layout": "yolov8", "num_classes": CLASSES, "input_size": [SIZE, SIZE],
    "labels": ["bright", "dark"], "score_threshold": 0.3, "iou_threshold": 0.5,
    "max_detections": 10, "normalized_boxes": True}}


class TinyDetector(nn.Module):
    """Three strided convs to a 4x4 grid and a decoupled head: box and class branches."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width),
            nn.ReLU())
        self.box = nn.Sequential(nn.Conv2d(2 * width, width, 1), nn.ReLU(), nn.Conv2d(width, 4, 1))
        self.cls = nn.Sequential(nn.Conv2d(2 * width, width, 1), nn.ReLU(),
                                 nn.Conv2d(width, CLASSES, 1))
        ys, xs = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
        self.register_buffer("centres", torch.stack([xs, ys]).reshape(1, 2, -1).float() + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        box = self.box(features).flatten(2)          # [B, 4, 16]
        xy = (self.centres + torch.tanh(box[:, :2])) / GRID
        wh = torch.sigmoid(box[:, 2:])
        scores = torch.sigmoid(self.cls(features).flatten(2))
        return torch.cat([xy, wh, scores], dim=1)     # [B, 4 + C, 16]


def detection_tensors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and padded labels [n, 2, 5]: (class, x1, y1, x2, y2) in pixels, -1 padding."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, SIZE, SIZE, generator=g) * 0.2
    labels = torch.full((n, MAX_OBJECTS, 5), -1.0)
    for i in range(n):
        cells = torch.randperm(GRID * GRID, generator=g)[:int(torch.randint(1, 3, (1,),
                                                                            generator=g))]
        for k, cell in enumerate(cells.tolist()):
            side = int(torch.randint(6, 11, (1,), generator=g))
            cx = (cell % GRID + 0.5) * STRIDE
            cy = (cell // GRID + 0.5) * STRIDE
            x1, y1 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
            x2, y2 = min(SIZE, x1 + side), min(SIZE, y1 + side)
            cls = int(torch.randint(0, CLASSES, (1,), generator=g))
            x[i, 0, y1:y2, x1:x2] += 2.0 if cls == 0 else -2.0
            labels[i, k] = torch.tensor([cls, x1, y1, x2, y2], dtype=torch.float32)
    return x, labels


def detection_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each object's centre cell learns its box and class; every other cell learns 'none'."""
    image, slot = torch.nonzero(labels[:, :, 0] >= 0, as_tuple=True)
    rows = labels[image, slot]
    centre = (rows[:, 1:3] + rows[:, 3:5]) / 2
    cell = (centre[:, 1] // STRIDE).long() * GRID + (centre[:, 0] // STRIDE).long()
    target = torch.zeros_like(outputs[:, 4:])
    target[image, rows[:, 0].long(), cell] = 1.0
    want = torch.cat([centre, rows[:, 3:5] - rows[:, 1:3]], dim=1) / SIZE
    box_loss = (outputs[image, :4, cell] - want).abs().sum() / len(labels)
    cls_loss = nn.functional.binary_cross_entropy(outputs[:, 4:].clamp(1e-6, 1 - 1e-6), target)
    return cls_loss + box_loss


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Any,
           steps: int) -> dict:
    """Adam over 64-sample batches of (x, y); the trained state_dict."""
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for i in range(steps):
        batch = slice((i * 64) % len(x), (i * 64) % len(x) + 64)
        loss = loss_fn(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


@lru_cache(maxsize=2)
def _trained_detector_state(seed: int, steps: int) -> dict:
    torch.manual_seed(seed)
    model = TinyDetector()
    return _train(model, *detection_tensors(512, seed + 100), detection_loss, steps)


def tiny_detector() -> TinyDetector:
    """A TinyDetector trained for a few hundred steps (the model factory)."""
    model = TinyDetector()
    model.load_state_dict(_trained_detector_state(0, 400))
    return model.eval()


def detection_data() -> dict[str, Any]:
    """The ``--data`` function of the tiny detector."""
    def loader(n: int, seed: int, shuffle: bool = False) -> DataLoader:
        return DataLoader(TensorDataset(*detection_tensors(n, seed)), batch_size=32,
                          shuffle=shuffle, generator=torch.Generator().manual_seed(seed))

    return {"train": loader(256, 1, True), "calibration": loader(64, 2),
            "validation": loader(128, 3), "task": DETECTION_TASK}


def detection_data_without_task() -> dict[str, Any]:
    """The tiny detector's data with no ``task``: read as a classifier's (a user's mistake)."""
    doc = detection_data()
    del doc["task"]
    return doc


class TinyRegressor(nn.Module):
    """A conv body with two heads: each quadrant's mean [B, 4] and the image's spread [B, 1]."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.means = nn.Linear(4 * width, 4)
        self.spread = nn.Linear(4 * width, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.means(features), self.spread(features)


def regression_tensors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with four quadrant levels; labels [n, 5]: the four means, then their spread."""
    g = torch.Generator().manual_seed(seed)
    levels = torch.rand(n, 4, generator=g) * 2 - 1
    x = torch.randn(n, 1, SIZE, SIZE, generator=g) * 0.1
    half = SIZE // 2
    for q in range(4):
        r, c = (q // 2) * half, (q % 2) * half
        x[:, 0, r:r + half, c:c + half] += levels[:, q:q + 1, None]
    return x, torch.cat([levels, levels.std(dim=1, keepdim=True)], dim=1)


@lru_cache(maxsize=1)
def _trained_regressor_state() -> dict:
    torch.manual_seed(0)
    model = TinyRegressor()

    def loss(outputs: tuple, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(torch.cat(outputs, 1), target)

    return _train(model, *regression_tensors(512, 100), loss, 300)


def tiny_regressor() -> TinyRegressor:
    """A trained TinyRegressor (the model factory)."""
    model = TinyRegressor()
    model.load_state_dict(_trained_regressor_state())
    return model.eval()


def regression_data() -> dict[str, Any]:
    """The ``--data`` function of the two-output regressor (default metric: -MSE)."""
    def loader(n: int, seed: int, shuffle: bool = False) -> DataLoader:
        return DataLoader(TensorDataset(*regression_tensors(n, seed)), batch_size=32,
                          shuffle=shuffle, generator=torch.Generator().manual_seed(seed))

    return {"train": loader(256, 1, True), "calibration": loader(64, 2),
            "validation": loader(128, 3),
            "task": {"kind": "generic", "output_names": ["quadrant_means", "spread"]}}
