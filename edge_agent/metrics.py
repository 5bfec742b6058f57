"""What the agent measures about its model, per telemetry window, cheaply and thread-safely.

Per inference: latency, errors, non-finite outputs, top-1 confidence and class,
and input values binned on the bundle's reference bin edges (the same bins the
build recorded, so the cloud can compare windows to the reference for drift).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from edge_agent.contracts.reference import ReferenceStats
from edge_agent.contracts.telemetry import ConfidenceHist, InputHist, LatencyMs

N_CONF_BINS = 10
CONFIDENCE_EDGES = [round(i / N_CONF_BINS, 1) for i in range(N_CONF_BINS + 1)]
MAX_LATENCIES = 20000


@dataclass
class Window:
    """A closed telemetry window: the figures of one interval, as telemetry's typed blocks."""

    seconds: float
    inferences: int
    errors: int
    non_finite: int
    latency_ms: LatencyMs
    confidence: ConfidenceHist
    class_counts: dict[str, int]
    input_hist: InputHist | None


def looks_like_probabilities(output: np.ndarray) -> bool:
    """True when rows are non-negative and sum to 1 (a softmax output), else logits."""
    scores = np.asarray(output, dtype=np.float64).reshape(output.shape[0], -1)
    return bool(scores.min() >= 0 and np.all(np.abs(scores.sum(axis=1) - 1.0) < 1e-2))


def top1(output: np.ndarray, probabilities: bool | None = None) -> tuple:
    """(classes, confidences) of a batch of class scores; softmax applied to logits."""
    scores = np.asarray(output, dtype=np.float32).reshape(output.shape[0], -1)
    if probabilities is None:
        probabilities = looks_like_probabilities(scores)
    classes = scores.argmax(axis=1)
    rows = np.arange(len(classes))
    if probabilities:
        return classes, scores[rows, classes]
    # softmax of the top class only: 1 / sum(exp(s - s_max))
    best = scores[rows, classes][:, None]
    return classes, 1.0 / np.exp(scores - best).sum(axis=1)


def channel_counts(inputs: np.ndarray, edges: np.ndarray, axis: int = 1) -> np.ndarray:
    """Per-channel counts of input values on fixed bin edges.

    Returns shape (channels, len(edges) + 1): column 0 counts values below the
    first edge, the last column values above the last edge, and the ones between
    them the bins; like ``np.histogram``, the last bin includes its right edge
    (so saturated inputs, e.g. white pixels, count in range). The build side
    records the calibration set's reference statistics with this same function,
    so device and build agree.
    """
    per_channel = np.moveaxis(np.asarray(inputs, dtype=np.float32), axis, 0)
    flat = per_channel.reshape(per_channel.shape[0], -1)
    bins = len(edges) + 1
    idx = np.searchsorted(edges, flat, side="right")
    idx[flat == edges[-1]] = len(edges) - 1
    offsets = (np.arange(flat.shape[0]) * bins)[:, None]
    counts = np.bincount((idx + offsets).ravel(), minlength=flat.shape[0] * bins)
    return counts.reshape(flat.shape[0], bins)


class ModelMetrics:
    """Accumulates one window of figures; ``close_window`` returns and resets them."""

    def __init__(self, reference: ReferenceStats | None = None, channel_axis: int = 1) -> None:
        self._lock = threading.Lock()
        ref_in = reference.input if reference else None
        ref_out = reference.output if reference else None
        self._edges = np.asarray(ref_in.bin_edges, dtype=np.float64) if ref_in else None
        self._axis = ref_in.channel_axis if ref_in else channel_axis
        # softmax output or logits: as the build recorded it, else decided on the first output
        self._probabilities: bool | None = ref_out.probabilities if ref_out else None
        self._reset(time.monotonic())

    def _reset(self, now: float) -> None:
        self._start = now
        self._count = self._errors = self._non_finite = 0
        self._latencies: list[float] = []
        self._conf_counts = np.zeros(len(CONFIDENCE_EDGES) - 1, dtype=np.int64)
        self._conf_sum = 0.0
        self._classes: dict[str, int] = {}
        self._input_counts: np.ndarray | None = None

    def record(self, latency_ms: float, inputs: np.ndarray, output: np.ndarray) -> tuple:
        """Count one successful batch; returns (classes, confidences) for sampling."""
        finite = bool(np.isfinite(output).all())
        if finite and self._probabilities is None:
            self._probabilities = looks_like_probabilities(output)
        classes, conf = top1(output, self._probabilities) if finite else \
            (np.zeros(0, int), np.zeros(0))
        hist = self._histogram(inputs)
        conf_bins = None
        if conf.size:
            bins = np.minimum((conf * N_CONF_BINS).astype(np.intp), N_CONF_BINS - 1)
            conf_bins = np.bincount(bins, minlength=N_CONF_BINS)
        with self._lock:
            self._count += int(output.shape[0]) if output.ndim else 1
            self._non_finite += 0 if finite else 1
            if len(self._latencies) < MAX_LATENCIES:
                self._latencies.append(latency_ms)
            if conf_bins is not None:
                self._conf_counts += conf_bins
                self._conf_sum += float(conf.sum())
            for c in classes.tolist():
                self._classes[str(c)] = self._classes.get(str(c), 0) + 1
            if hist is not None:
                old = self._input_counts
                self._input_counts = hist if old is None else old + hist
        return classes, conf

    def record_error(self) -> None:
        """Count one failed inference."""
        with self._lock:
            self._errors += 1

    def _histogram(self, inputs: np.ndarray) -> np.ndarray | None:
        if self._edges is None or inputs.ndim <= self._axis:
            return None
        return channel_counts(inputs, self._edges, self._axis)

    def close_window(self) -> Window:
        """The figures since the last call, and a fresh window."""
        now = time.monotonic()
        with self._lock:
            window = self._snapshot(now)
            self._reset(now)
        return window

    def _snapshot(self, now: float) -> Window:
        lat = np.asarray(self._latencies) if self._latencies else None
        pct = [round(float(p), 4) for p in np.percentile(lat, (50, 95, 99))] \
            if lat is not None else [None, None, None]
        hist = None
        if self._input_counts is not None:
            counts = self._input_counts
            hist = InputHist(bin_edges=self._edges.tolist(), channel_axis=self._axis,
                             below=counts[:, 0].tolist(), above=counts[:, -1].tolist(),
                             per_channel=counts[:, 1:-1].tolist())
        scored = int(self._conf_counts.sum())
        confidence = ConfidenceHist(edges=list(CONFIDENCE_EDGES),
                                    counts=self._conf_counts.tolist(),
                                    mean=round(self._conf_sum / scored, 5) if scored else None)
        return Window(
            seconds=round(now - self._start, 3), inferences=self._count, errors=self._errors,
            non_finite=self._non_finite, latency_ms=LatencyMs(*pct), confidence=confidence,
            class_counts=dict(self._classes), input_hist=hist)
