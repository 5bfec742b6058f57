"""The digits data set for ``edgekit build --data examples/digits/data.py:data``.

scikit-learn's bundled 8x8 digits (1,797 real images, no download), scaled to
[0, 1], upsampled to 32x32 (bilinear, so the networks do enough work for latency to
be meaningful), normalised, and split with a fixed seed into train, calibration and
validation sets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

IMAGE_SIZE = 32
MEAN, STD = 0.3, 0.4          # of the upsampled [0, 1] images, rounded
VALIDATION_FRACTION, CALIBRATION_FRACTION = 0.25, 0.1
LABELS = [str(i) for i in range(10)]
PREPROCESSING = {
    "source": "8x8 grayscale digit, values 0..16 (sklearn.datasets.load_digits)",
    "steps": [{"op": "scale", "factor": 1 / 16},
              {"op": "resize", "size": [IMAGE_SIZE, IMAGE_SIZE], "mode": "bilinear",
               "align_corners": False},
              {"op": "normalize", "mean": [MEAN], "std": [STD]}],
    "layout": "NCHW", "dtype": "float32",
}


def preprocess(images: np.ndarray) -> torch.Tensor:
    """Raw 8x8 digit images (0..16) -> the model's float input [N, 1, 32, 32]."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return (x - MEAN) / STD


def splits(seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, labels) for train, calibration and validation; the same every call."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_val = int(len(order) * VALIDATION_FRACTION)
    n_cal = int(len(order) * CALIBRATION_FRACTION)
    parts = {"validation": order[:n_val], "calibration": order[n_val:n_val + n_cal],
             "train": order[n_val + n_cal:]}
    x, y = preprocess(images), torch.as_tensor(labels, dtype=torch.long)
    return {name: (x[idx], y[idx]) for name, idx in parts.items()}


def loaders(batch_size: int = 64, seed: int = 0) -> dict[str, Any]:
    """The DataLoaders of the three splits (train shuffled with a seeded generator)."""
    parts = splits(seed)
    generator = torch.Generator().manual_seed(seed)
    return {name: DataLoader(TensorDataset(*tensors), batch_size=batch_size,
                             shuffle=name == "train", generator=generator if name == "train"
                             else None)
            for name, tensors in parts.items()}


def data() -> dict[str, Any]:
    """The ``--data`` function: loaders, plus the labels and preprocessing for the manifest."""
    return {**loaders(), "labels": LABELS, "preprocessing": PREPROCESSING}
