"""Histograms of a model's outputs beyond class scores, on fixed edges shared by the build
(reference statistics in the manifest) and the device (telemetry windows), so the cloud
compares like with like.

- detection: detections per image, their scores, their classes, and their box area
  relative to the image;
- generic: each output's values on edges fixed at build time (16 bins between the 0.5th
  and 99.5th percentile), with counts below and above.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_agent.tasks.detection import Detections

COUNT_EDGES = [0, 1, 2, 3, 4, 5, 6, 8, 11, 16, 21, 31, 51, 101, 1001]
"""Bins of detections per image: 0, 1, ..., 5, 6-7, 8-10, ..., 101-1000."""
SCORE_EDGES = [round(0.05 * i, 2) for i in range(21)]
AREA_EDGES = [0.0, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0]
"""Box area as a fraction of the image (a box past the border counts in the last bin)."""
VALUE_BINS = 16


def detection_counts(found: Sequence[Detections], num_classes: int,
                     input_size: Sequence[int]) -> dict[str, list[int]]:
    """The four count vectors of a set of images' detections (summable across windows)."""
    per_image = np.array([len(d) for d in found], dtype=np.int64)
    scores = np.concatenate([d.scores for d in found]) if found else np.zeros(0)
    classes = np.concatenate([d.classes for d in found]) if found else np.zeros(0, np.int64)
    boxes = np.concatenate([d.boxes for d in found]) if found else np.zeros((0, 4))
    height, width = input_size
    area = (np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0,
                                                                   None)) / float(height * width)
    classes = classes[(classes >= 0) & (classes < num_classes)]
    return {
        "count_hist": np.histogram(np.minimum(per_image, COUNT_EDGES[-1] - 1),
                                   bins=COUNT_EDGES)[0].tolist(),
        "score_hist": np.histogram(np.clip(scores, 0, 1), bins=SCORE_EDGES)[0].tolist(),
        "class_counts": np.bincount(classes, minlength=num_classes).tolist(),
        "area_hist": np.histogram(np.clip(area, 0, 1), bins=AREA_EDGES)[0].tolist(),
    }


def value_edges(values: np.ndarray, bins: int = VALUE_BINS) -> list[float]:
    """``bins + 1`` equal-width edges between the 0.5th and 99.5th percentile of ``values``."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    if not flat.size:
        return [float(i) for i in range(bins + 1)]
    low, high = np.percentile(flat, [0.5, 99.5])
    if high <= low:
        high = low + 1e-6
    return [round(float(e), 6) for e in np.linspace(low, high, bins + 1)]


def value_counts(values: np.ndarray, edges: Sequence[float]) -> list[int]:
    """Counts of ``values`` below the first edge, in each bin, and above the last edge."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    low, high = edges[0], edges[-1]
    inside = np.histogram(flat[(flat >= low) & (flat <= high)], bins=np.asarray(edges))[0]
    return [int(np.sum(flat < low)), *inside.tolist(), int(np.sum(flat > high))]
