"""The ``--data`` function of a retraining build: ``edgekit build --data
examples/digits/retrain_data.py:data`` with ``$EDGEKIT_RETRAIN_DATA`` naming the .npz
that ``examples/digits/retrain.py`` wrote (``<split>_x`` / ``<split>_y`` arrays for
train, calibration, validation and test)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from examples.digits.data import LABELS, PREPROCESSING

ENV = "EDGEKIT_RETRAIN_DATA"
SPLITS = ("train", "calibration", "validation", "test")


def write(path: Path, parts: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Path:
    """Save the splits for ``data()`` to read."""
    arrays = {}
    for name, (x, y) in parts.items():
        arrays[f"{name}_x"], arrays[f"{name}_y"] = x.numpy(), y.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def data(batch_size: int = 64, seed: int = 0) -> dict[str, Any]:
    """Loaders of the retraining splits, plus labels and preprocessing for the manifest."""
    where = os.environ.get(ENV)
    if not where or not Path(where).is_file():
        raise FileNotFoundError(f"set {ENV} to the .npz examples/digits/retrain.py wrote "
                                f"(got {where!r})")
    arrays = np.load(where)
    out: dict[str, Any] = {"labels": LABELS, "preprocessing": PREPROCESSING}
    for name in SPLITS:
        if f"{name}_x" not in arrays:
            continue
        tensors = TensorDataset(torch.from_numpy(arrays[f"{name}_x"]),
                                torch.from_numpy(arrays[f"{name}_y"]).long())
        shuffle = name == "train"
        out[name] = DataLoader(tensors, batch_size=batch_size, shuffle=shuffle,
                               generator=torch.Generator().manual_seed(seed) if shuffle else None)
    return out
