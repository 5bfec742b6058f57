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
from edge_agent.tasks.layouts import candidates

PARITY_IOU = 0.9


@dataclass
class Detections:
    """One image's detections: boxes ``[K, 4]`` (x1 y1 x2 y2, input pixels), scores, classes."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    finite: bool = True
    """False when the raw outputs held NaN or inf where post-processing read them."""

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def to_list(self, labels: Sequence[str] = ()) -> list[dict]:
        """JSON-ready detections, best first: class, label, score and box."""
        boxes = np.round(self.boxes.astype(np.float64), 2).tolist()
        scores = np.round(self.scores.astype(np.float64), 5).tolist()
        rows = []
        for box, score, cls in zip(boxes, scores, self.classes.tolist()):
            row = {"class": cls, "score": score, "box": box}
            if labels and 0 <= cls < len(labels):
                row["label"] = labels[cls]
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


MATRIX_MAX = 160
"""Up to this many candidates NMS reads one IoU matrix; past it, the IoU of each pair of
boxes of one class (``PAIRS_MAX`` pairs at most; past that, class by class, a large class
walking its kept boxes: one vectorised pass over the rest per kept box)."""
PAIRS_MAX = 400_000
SMALL_CLASS = 32  # class by class, a class this small reads its IoU matrix


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float,
        limit: int) -> np.ndarray:
    """Indices kept by per-class greedy non-maximum suppression, best score first: a box
    is dropped when a better box of its class overlaps it by IoU > ``iou``."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    if len(order) <= 1:
        return order[:limit].astype(np.int64)
    ranked = np.asarray(boxes, dtype=np.float64)[order]
    ranked_classes = np.asarray(classes)[order]
    if len(order) <= MATRIX_MAX:
        kept = _greedy_matrix(ranked, ranked_classes, iou, limit)
    else:
        kept = _greedy_pairs(ranked, ranked_classes, iou, limit)
    return order[kept].astype(np.int64)


def _same_class_pairs(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Every pair ``(i, j)``, ``i < j``, of ranked boxes of one class; None when there are
    more than ``PAIRS_MAX``."""
    grouped = np.argsort(classes, kind="stable")  # each class's boxes stay best first
    starts = np.flatnonzero(np.r_[True, np.diff(classes[grouped]) != 0])
    ends = np.r_[starts[1:], len(grouped)]
    sizes = ends - starts
    if int(np.sum(sizes * (sizes - 1) // 2)) > PAIRS_MAX:
        return None
    group_end = np.repeat(ends, sizes)
    after = group_end - np.arange(len(grouped)) - 1  # later boxes of the same class
    first = np.repeat(np.arange(len(grouped)), after)
    offset = np.arange(len(first)) - np.repeat(np.cumsum(after) - after, after)
    return grouped[first], grouped[first + 1 + offset]


def _greedy_pairs(boxes: np.ndarray, classes: np.ndarray, iou: float,
                  limit: int) -> np.ndarray:
    """Greedy NMS of many ranked boxes from the IoU of each same-class pair."""
    pairs = _same_class_pairs(classes)
    if pairs is None:  # too many pairs: class by class, walking a crowded class
        one_class = bool((classes == classes[0]).all())
        return (_greedy_walk if one_class else _per_class)(boxes, classes, iou, limit)
    better, worse = pairs
    a, b = boxes[better], boxes[worse]
    width = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    height = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = width * height
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0,
                                                                 None)
    union = area[better] + area[worse] - inter
    hit = inter > iou * np.where(union > 0, union, np.inf)
    return _resolve(len(boxes), better[hit], worse[hit])[:limit]


def _resolve(count: int, better: np.ndarray, worse: np.ndarray) -> np.ndarray:
    """The boxes greedy NMS keeps, given which better box suppresses which worse one.

    Greedy keeps a box when no kept better box suppresses it. Each round decides, at once,
    every box whose suppressors are all decided (kept if none of them was kept); the best
    undecided box is always among them, so the rounds end, usually after a few."""
    undecided, kept = np.ones(count, dtype=bool), np.zeros(count, dtype=bool)
    while undecided.any():
        waiting = np.zeros(count, dtype=bool)
        waiting[worse[undecided[better]]] = True
        suppressed = np.zeros(count, dtype=bool)
        suppressed[worse[kept[better]]] = True
        decided = undecided & (~waiting | suppressed)
        kept |= decided & ~suppressed
        undecided &= ~decided
        live = undecided[worse]  # edges into decided boxes are done with
        better, worse = better[live], worse[live]
    return np.flatnonzero(kept)


def _per_class(boxes: np.ndarray, classes: np.ndarray, iou: float, limit: int) -> np.ndarray:
    """Greedy NMS of many ranked boxes, class by class (classes never suppress each other,
    so the best ``limit`` of the union is what one pass over all would keep)."""
    grouped = np.argsort(classes, kind="stable")  # each class's boxes stay best first
    bounds = np.flatnonzero(np.diff(classes[grouped])) + 1
    kept = []
    for members in np.split(grouped, bounds):
        nms_of = _greedy_matrix if len(members) <= SMALL_CLASS else _greedy_pairs
        kept.append(members[nms_of(boxes[members], classes[members], iou, limit)])
    return np.sort(np.concatenate(kept))[:limit]


def _greedy_matrix(boxes: np.ndarray, classes: np.ndarray, iou: float,
                   limit: int) -> np.ndarray:
    """Greedy NMS of boxes ranked best first, from the full IoU matrix (few candidates)."""
    suppresses = (iou_matrix(boxes, boxes) > iou) & (classes[:, None] == classes[None, :])
    removed = np.zeros(len(boxes), dtype=bool)
    keep: list[int] = []
    for i in range(len(boxes)):
        if removed[i]:
            continue
        keep.append(i)
        if len(keep) >= limit:
            break
        removed |= suppresses[i]
    return np.asarray(keep, dtype=np.int64)


def _greedy_walk(boxes: np.ndarray, classes: np.ndarray, iou: float, limit: int) -> np.ndarray:
    """Greedy NMS of boxes ranked best first, one vectorised pass per kept box."""
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, k]) for k in range(4))
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    left = np.arange(len(boxes))
    keep: list[int] = []
    while left.size and len(keep) < limit:
        i, rest = left[0], left[1:]
        keep.append(int(i))
        inter = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None) \
            * np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        union = area[i] + area[rest] - inter
        overlap = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        left = rest[(overlap <= iou) | (classes[rest] != classes[i])]
    return np.asarray(keep, dtype=np.int64)


def postprocess(outputs: list[np.ndarray], spec: DetectionSpec,
                score_threshold: float | None = None, iou_threshold: float | None = None,
                max_detections: int | None = None) -> list[Detections]:
    """Each image's detections from a batch of raw outputs, in the model input's pixels;
    the thresholds and the maximum default to the spec's."""
    threshold = spec.score_threshold if score_threshold is None else score_threshold
    iou = spec.iou_threshold if iou_threshold is None else iou_threshold
    limit = spec.max_detections if max_detections is None else max_detections
    found = []
    for image in candidates(list(outputs), spec, threshold):
        kept = nms(image.boxes, image.scores, image.classes, iou, limit)
        found.append(Detections(image.boxes[kept].astype(np.float32, copy=False),
                                image.scores[kept].astype(np.float32, copy=False),
                                image.classes[kept].astype(np.int64, copy=False), image.finite))
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
