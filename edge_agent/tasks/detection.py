"""Detector post-processing and the detection parity rule (numpy only).

``postprocess`` decodes raw outputs with the spec's layout, keeps boxes whose best class
score passes ``score_threshold``, runs per-class non-maximum suppression at
``iou_threshold`` and keeps the ``max_detections`` best per image: what the device answers
and what the build scores. ``match`` is the parity rule between two models' detections of
one image: same class, IoU >= 0.9, score within a tolerance, and at most one detection
left unmatched (a box near the threshold may flip).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_agent.contracts.task import DetectionSpec
from edge_agent.tasks.layouts import layout_for

PARITY_IOU = 0.9


@dataclass
class Detections:
    """One image's detections: boxes ``[K, 4]`` (x1 y1 x2 y2, input pixels), scores, classes."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def to_list(self, labels: Sequence[str] = ()) -> list[dict]:
        """JSON-ready detections, best first: class, label, score and box."""
        rows = []
        for box, score, cls in zip(self.boxes, self.scores, self.classes):
            row = {"class": int(cls), "score": round(float(score), 5),
                   "box": [round(float(v), 2) for v in box]}
            if labels and 0 <= int(cls) < len(labels):
                row["label"] = labels[int(cls)]
            rows.append(row)
        return rows


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` [K, 4] with every box of ``b`` [L, 4]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float,
        limit: int) -> np.ndarray:
    """Indices kept by per-class greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    if len(order) == 0:
        return order
    # Offsetting each class's boxes apart makes one pass per-class (boxes of two classes
    # never overlap).
    span = float(np.max(np.abs(boxes))) + 1.0
    shifted = boxes + (classes.astype(np.float64) * 2 * span)[:, None]
    overlaps = iou_matrix(shifted[order], shifted[order])
    keep: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        if len(keep) >= limit:
            break
        suppressed |= overlaps[i] > iou
    return np.asarray(keep, dtype=np.int64)


def postprocess(outputs: list[np.ndarray], spec: DetectionSpec,
                score_threshold: float | None = None) -> list[Detections]:
    """Each image's detections from a batch of raw outputs."""
    boxes, scores = layout_for(spec.layout).decode(list(outputs), spec)
    threshold = spec.score_threshold if score_threshold is None else score_threshold
    found = []
    for image_boxes, image_scores in zip(boxes, scores):
        classes = np.argmax(image_scores, axis=1) if image_scores.size else \
            np.zeros(0, np.int64)
        best = image_scores[np.arange(len(classes)), classes] if len(classes) else \
            np.zeros(0, np.float32)
        passing = np.flatnonzero(best >= threshold)
        kept = passing[nms(image_boxes[passing], best[passing], classes[passing],
                           spec.iou_threshold, spec.max_detections)]
        found.append(Detections(image_boxes[kept].astype(np.float32),
                                best[kept].astype(np.float32), classes[kept].astype(np.int64)))
    return found


@dataclass
class Match:
    """How two models' detections of one image correspond."""

    matched: int
    unmatched: int
    count_diff: int
    max_score_diff: float
    min_iou: float
    ok: bool


def match(expected: Detections, actual: Detections, score_tolerance: float,
          min_iou: float = PARITY_IOU) -> Match:
    """Greedy matching, best expected score first: same class and IoU >= ``min_iou``. The
    image agrees when every pair's scores differ by at most ``score_tolerance`` and at most
    one detection of either side is left unmatched."""
    overlaps = iou_matrix(expected.boxes, actual.boxes)
    taken = np.zeros(len(actual), dtype=bool)
    pairs = []
    for i in np.argsort(-expected.scores, kind="stable"):
        candidates = np.flatnonzero((actual.classes == expected.classes[i]) & ~taken
                                    & (overlaps[i] >= min_iou))
        if len(candidates):
            j = int(candidates[np.argmax(overlaps[i, candidates])])
            taken[j] = True
            pairs.append((int(i), j))
    score_diff = max([abs(float(expected.scores[i]) - float(actual.scores[j]))
                      for i, j in pairs] or [0.0])
    lowest = min([float(overlaps[i, j]) for i, j in pairs] or [1.0])
    unmatched = len(expected) + len(actual) - 2 * len(pairs)
    return Match(matched=len(pairs), unmatched=unmatched,
                 count_diff=len(actual) - len(expected), max_score_diff=round(score_diff, 6),
                 min_iou=round(lowest, 6),
                 ok=unmatched <= 1 and score_diff <= score_tolerance)


def agreement(expected: list[Detections], actual: list[Detections],
              score_tolerance: float) -> dict:
    """The parity figures of two models over many images: the share of images that agree,
    the largest count difference and score difference, and the lowest matched IoU."""
    results = [match(e, a, score_tolerance) for e, a in zip(expected, actual)]
    if len(expected) != len(actual) or not results:
        return {"detection_agreement": 0.0 if len(expected) != len(actual) else 1.0,
                "max_count_diff": 0, "max_score_diff": 0.0, "min_iou": 1.0,
                "images": len(results)}
    return {"detection_agreement": round(float(np.mean([r.ok for r in results])), 5),
            "max_count_diff": int(max(abs(r.count_diff) for r in results)),
            "max_score_diff": round(max(r.max_score_diff for r in results), 6),
            "min_iou": round(min(r.min_iou for r in results), 6),
            "images": len(results)}
