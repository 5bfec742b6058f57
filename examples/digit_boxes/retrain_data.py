"""The ``--data`` function of a retraining build of the digit-boxes detector:
``edgekit build --data examples/digit_boxes/retrain_data.py:data`` with
``$EDGEKIT_RETRAIN_DATA`` naming the .npz that ``examples/digit_boxes/retrain.py`` wrote
(``<split>_x`` inputs ``[N, 1, 96, 96]`` and ``<split>_y`` padded labels ``[N, 4, 5]`` for
train, calibration, validation and test)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from examples.digit_boxes.data import LABELS, PREPROCESSING, TASK

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


def read(path: Path | str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The splits ``write`` saved."""
    arrays = np.load(path)
    return {name: (torch.from_numpy(arrays[f"{name}_x"]), torch.from_numpy(arrays[f"{name}_y"]))
            for name in SPLITS if f"{name}_x" in arrays}


def data(batch_size: int = 32, seed: int = 0) -> dict[str, Any]:
    """Loaders of the retraining splits, plus labels, preprocessing and the detection task."""
    where = os.environ.get(ENV)
    if not where or not Path(where).is_file():
        raise FileNotFoundError(f"set {ENV} to the .npz examples/digit_boxes/retrain.py "
                                f"wrote (got {where!r})")
    out: dict[str, Any] = {"labels": LABELS, "preprocessing": PREPROCESSING, "task": TASK}
    for name, tensors in read(where).items():
        shuffle = name == "train"
        out[name] = DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle,
                               generator=torch.Generator().manual_seed(seed) if shuffle else None)
    return out
