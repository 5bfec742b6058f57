"""Labels as one tensor, whatever the data loader yields.

Class labels are ``[N]`` integers and regression targets ``[N, ...]`` floats, as given.
Detection labels may come per batch as a padded tensor ``[B, M, 5]`` (rows: class, x1,
y1, x2, y2 in input pixels; class -1 pads), or as a list of per-image ``[K, 5]`` tensors,
or as a list of ``{"boxes": [K, 4], "labels": [K]}`` dicts (torchvision's style). They
are stored padded, ``[N, M, 5]``, so the build can index and split them like any tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from compress.errors import UserCodeError

PAD = -1.0


def _image_rows(item: Any) -> torch.Tensor:
    if isinstance(item, dict):
        boxes = torch.as_tensor(item.get("boxes", []), dtype=torch.float32).reshape(-1, 4)
        classes = torch.as_tensor(item.get("labels", []), dtype=torch.float32).reshape(-1, 1)
        if len(boxes) != len(classes):
            raise UserCodeError(f"a detection label has {len(boxes)} boxes and "
                                f"{len(classes)} labels; give one class per box")
        return torch.cat([classes, boxes], dim=1)
    rows = torch.as_tensor(item, dtype=torch.float32)
    if rows.numel() == 0:
        return rows.reshape(0, 5)
    if rows.ndim != 2 or rows.shape[1] != 5:
        raise UserCodeError(f"a detection label is {list(rows.shape)}; give [boxes, 5] rows of "
                            "(class, x1, y1, x2, y2) per image, or {'boxes', 'labels'} dicts")
    return rows


def pad_rows(images: Sequence[torch.Tensor], width: int | None = None) -> torch.Tensor:
    """Per-image ``[K, 5]`` rows as one ``[N, M, 5]`` tensor padded with class -1."""
    width = max([len(r) for r in images] + [1]) if width is None else width
    out = torch.full((len(images), width, 5), PAD)
    for i, rows in enumerate(images):
        out[i, :len(rows)] = rows[:width]
    return out


def batch_labels(labels: Any) -> torch.Tensor:
    """One batch's labels as a tensor (lists of per-image detection labels padded)."""
    if isinstance(labels, torch.Tensor):
        return labels
    if isinstance(labels, list | tuple) and (not labels or not isinstance(labels[0], int | float)):
        return pad_rows([_image_rows(item) for item in labels])
    return torch.as_tensor(labels)


def join(batches: Sequence[torch.Tensor]) -> torch.Tensor:
    """Label batches joined; padded detection batches are padded to the widest first."""
    if batches and batches[0].ndim == 3 and batches[0].shape[-1] == 5 \
            and len({b.shape[1] for b in batches}) > 1:
        width = max(b.shape[1] for b in batches)
        batches = [torch.cat([b, torch.full((len(b), width - b.shape[1], 5), PAD)], dim=1)
                   for b in batches]
    return torch.cat(list(batches))


def image_rows(labels: torch.Tensor) -> list[torch.Tensor]:
    """Padded ``[N, M, 5]`` detection labels back to each image's real ``[K, 5]`` rows."""
    return [rows[rows[:, 0] >= 0] for rows in labels]
