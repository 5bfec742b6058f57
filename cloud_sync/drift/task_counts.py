"""The task blocks of telemetry (protocol 1.3) as summable counts: a detector's
``detection`` window and a generic model's per-output ``values`` histograms.

Like the input and confidence histograms of ``window``, they add up across messages
of one device and across devices of a fleet, as long as the bin edges agree (they are
the bundle's reference edges, so they do for one model version).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cloud_sync.errors import CloudError
from edge_agent.contracts.telemetry import DetectionWindow, ValueWindow


class CountsError(CloudError, ValueError):
    """Task counts on different bins cannot be added."""


@dataclass(frozen=True, eq=False)
class DetectionCounts:
    """A detector's summed windows: frames, empty frames and the four histograms."""

    frames: int
    empty_frames: int
    count_edges: tuple[float, ...]
    count_hist: np.ndarray
    score_edges: tuple[float, ...]
    score_hist: np.ndarray
    class_counts: np.ndarray
    area_edges: tuple[float, ...]
    area_hist: np.ndarray
    score_sum: float = 0.0
    """Sum of detection scores (window mean x detections), for the exact mean."""

    @property
    def detections(self) -> int:
        """Boxes found (every detection has a score)."""
        return int(self.score_hist.sum())

    @property
    def mean_score(self) -> float | None:
        """Mean detection score, or None with no detections."""
        return self.score_sum / self.detections if self.detections else None

    @classmethod
    def of(cls, window: DetectionWindow) -> DetectionCounts:
        """The counts of one telemetry ``detection`` block."""
        score_hist = np.asarray(window.score_hist, dtype=np.int64)
        return cls(frames=window.frames, empty_frames=window.empty_frames,
                   count_edges=tuple(window.count_edges),
                   count_hist=np.asarray(window.count_hist, dtype=np.int64),
                   score_edges=tuple(window.score_edges), score_hist=score_hist,
                   class_counts=np.asarray(window.class_counts, dtype=np.int64),
                   area_edges=tuple(window.area_edges),
                   area_hist=np.asarray(window.area_hist, dtype=np.int64),
                   score_sum=(window.mean_score or 0.0) * int(score_hist.sum()))

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        if (self.count_edges, self.score_edges, self.area_edges) != \
                (other.count_edges, other.score_edges, other.area_edges):
            raise CountsError("detection histograms on different bins cannot be pooled")
        return DetectionCounts(
            frames=self.frames + other.frames, empty_frames=self.empty_frames + other.empty_frames,
            count_edges=self.count_edges, count_hist=self.count_hist + other.count_hist,
            score_edges=self.score_edges, score_hist=self.score_hist + other.score_hist,
            class_counts=_add_ragged(self.class_counts, other.class_counts),
            area_edges=self.area_edges, area_hist=self.area_hist + other.area_hist,
            score_sum=self.score_sum + other.score_sum)


def _add_ragged(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(max(len(a), len(b)), dtype=np.int64)
    out[:len(a)] += a
    out[:len(b)] += b
    return out


@dataclass(frozen=True, eq=False)
class ValueCounts:
    """One generic output's summed histogram ``[below, *bins, above]`` and its inferences."""

    edges: tuple[float, ...]
    counts: np.ndarray
    inferences: int = 0
    value_sum: float = 0.0

    @classmethod
    def of(cls, window: ValueWindow, inferences: int) -> ValueCounts:
        """The counts of one ``values`` entry of a message with ``inferences``."""
        counts = np.asarray(window.counts, dtype=np.int64)
        return cls(tuple(window.edges), counts, inferences,
                   (window.mean or 0.0) * int(counts.sum()))

    def __add__(self, other: ValueCounts) -> ValueCounts:
        if self.edges != other.edges or self.counts.shape != other.counts.shape:
            raise CountsError("value histograms on different bins cannot be pooled")
        return ValueCounts(self.edges, self.counts + other.counts,
                           self.inferences + other.inferences, self.value_sum + other.value_sum)


@dataclass(frozen=True, eq=False)
class TaskCounts:
    """The task part of a window: a detector's counts, a generic model's per-output ones."""

    detection: DetectionCounts | None = None
    values: dict[str, ValueCounts] = field(default_factory=dict)

    @classmethod
    def of(cls, detection: DetectionWindow | None, values: list[ValueWindow],
           inferences: int) -> TaskCounts:
        """The task blocks of one telemetry message."""
        return cls(None if detection is None else DetectionCounts.of(detection),
                   {v.name: ValueCounts.of(v, inferences) for v in values})

    def __add__(self, other: TaskCounts) -> TaskCounts:
        det = self.detection if other.detection is None else \
            other.detection if self.detection is None else self.detection + other.detection
        values = dict(self.values)
        for name, counts in other.values.items():
            values[name] = values[name] + counts if name in values else counts
        return TaskCounts(det, values)
