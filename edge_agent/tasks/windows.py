"""Telemetry's per-task output blocks, counted over one window (protocol 1.3).

- ``DetectionCounter``: a detector's frames, on ``edge_agent.tasks.stats``' edges (the
  same function that counted the bundle's reference): ``DetectionWindow``;
- ``ValueCounter``: a generic model's outputs on the edges of the bundle's
  ``reference_stats.values``: one ``ValueWindow`` per output with a reference.

Each is fed on the inference thread and buffers frames, counting them together every
``BATCH`` frames (and when the window closes); ``close`` returns the block and starts a
new window. Thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from edge_agent.contracts.reference import ValueReference
from edge_agent.contracts.task import DetectionSpec
from edge_agent.contracts.telemetry import DetectionWindow, ValueWindow
from edge_agent.tasks import stats
from edge_agent.tasks.detection import Detections

BATCH = 64
PENDING_BYTES = 4 << 20  # a generic model's buffered outputs are counted past this size


class DetectionCounter:
    """Counts frames of detections (at the manifest's thresholds) into a DetectionWindow."""

    FIELD = "detection"
    """The telemetry window field its block goes in."""

    def __init__(self, spec: DetectionSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._pending: list[Detections] = []
        self._reset()

    def _reset(self) -> None:
        self._frames = self._empty = 0
        self._score_sum = 0.0
        self._counts = {key: np.zeros(n, np.int64) for key, n in (
            ("count_hist", len(stats.COUNT_EDGES) - 1), ("score_hist", len(stats.SCORE_EDGES) - 1),
            ("class_counts", self.spec.num_classes), ("area_hist", len(stats.AREA_EDGES) - 1))}

    def record(self, frames: Sequence[Detections]) -> None:
        """Add one batch's frames."""
        with self._lock:
            self._pending.extend(frames)
            if len(self._pending) >= BATCH:
                self._flush()

    def _flush(self) -> None:
        frames, self._pending = self._pending, []
        if not frames:
            return
        found = stats.detection_counts(frames, self.spec.num_classes, self.spec.input_size)
        for key, counts in found.items():
            self._counts[key] += np.asarray(counts, dtype=np.int64)
        self._frames += len(frames)
        self._empty += sum(1 for d in frames if not len(d))
        self._score_sum += float(sum(float(d.scores.sum()) for d in frames))

    def close(self) -> DetectionWindow:
        """The window's block, and a fresh window."""
        with self._lock:
            self._flush()
            detections = int(self._counts["score_hist"].sum())
            window = DetectionWindow(
                frames=self._frames, empty_frames=self._empty,
                count_edges=[float(e) for e in stats.COUNT_EDGES],
                count_hist=self._counts["count_hist"].tolist(),
                score_edges=list(stats.SCORE_EDGES), score_hist=self._counts["score_hist"].tolist(),
                class_counts=self._counts["class_counts"].tolist(),
                area_edges=list(stats.AREA_EDGES), area_hist=self._counts["area_hist"].tolist(),
                mean_score=round(self._score_sum / detections, 5) if detections else None)
            self._reset()
        return window


class ValueCounter:
    """Counts each output's values on its reference edges into ValueWindows."""

    FIELD = "values"
    """The telemetry window field its blocks go in."""

    def __init__(self, references: Sequence[ValueReference], names: Sequence[str]) -> None:
        by_name = {r.name: r for r in references}
        # outputs are matched to references by name, else by position
        self._refs = [by_name.get(name, references[i] if i < len(references) else None)
                      for i, name in enumerate(names)]
        self._lock = threading.Lock()
        self._pending: list[list[np.ndarray]] = []
        self._pending_bytes = 0
        self._reset()

    def _reset(self) -> None:
        self._counts = [None if r is None else np.zeros(len(r.edges) + 1, np.int64)
                        for r in self._refs]
        self._sums = [0.0] * len(self._refs)
        self._n = [0] * len(self._refs)

    def record(self, outputs: Sequence[np.ndarray]) -> None:
        """Add one batch's outputs (copies: the caller keeps its arrays)."""
        if not any(r is not None for r in self._refs):
            return
        with self._lock:
            copies = [np.array(o, dtype=np.float32) for o in outputs]
            self._pending.append(copies)
            self._pending_bytes += sum(c.nbytes for c in copies)
            if len(self._pending) >= BATCH or self._pending_bytes >= PENDING_BYTES:
                self._flush()

    def _flush(self) -> None:
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        if not pending:
            return
        for i, ref in enumerate(self._refs):
            if ref is None or i >= len(pending[0]):
                continue
            values = np.concatenate([p[i].ravel() for p in pending])
            values = values[np.isfinite(values)]
            self._counts[i] += np.asarray(stats.value_counts(values, ref.edges), np.int64)
            self._sums[i] += float(values.sum(dtype=np.float64))
            self._n[i] += int(values.size)

    def close(self) -> list[ValueWindow]:
        """The window's blocks (one per output with a reference), and a fresh window."""
        with self._lock:
            self._flush()
            blocks = [ValueWindow(name=ref.name, edges=list(ref.edges),
                                  counts=self._counts[i].tolist(),
                                  mean=round(self._sums[i] / self._n[i], 6) if self._n[i] else None)
                      for i, ref in enumerate(self._refs) if ref is not None]
            self._reset()
        return blocks
