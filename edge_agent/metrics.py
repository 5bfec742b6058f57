"""What the agent measures about its model, per telemetry window, cheaply and thread-safely.

Per inference: latency, errors, non-finite outputs, top-1 confidence and class,
and input values binned on the bundle's reference bin edges (the same bins the
build recorded, so the cloud can compare windows to the reference for drift).
Models of other tasks are not scored as classifiers (``classify=False``): their task
plug-in counts the window's output block (``task_counter``: a detector's
``DetectionWindow``, a generic model's ``ValueWindow`` list; ``edge_agent.tasks``).

The hot path is kept short: a single-example call only copies its output row, a
strided sample of its input (see ``InputHist.sample_stride``) and its latency into
preallocated buffers; every ``BATCH`` inferences (and when the window closes) the
buffered rows are counted together with a few vectorised numpy calls. Right after a
large model ran, the caches are full of its weights, and each small numpy call on
the inference thread costs ten times what it costs warm, so fewer calls per
inference is what makes the agent's overhead small (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_agent.contracts.reference import ReferenceStats
from edge_agent.contracts.telemetry import (
    ConfidenceHist,
    DetectionWindow,
    InputHist,
    LatencyMs,
    ValueWindow,
)

N_CONF_BINS = 10
CONFIDENCE_EDGES = [round(i / N_CONF_BINS, 1) for i in range(N_CONF_BINS + 1)]
MAX_LATENCIES = 20000
BATCH = 64  # single-example inferences buffered before they are counted together
SAMPLE_VALUES = 256  # about this many values per channel per inference are histogrammed


@dataclass
class Window:
    """A closed telemetry window: the figures of one interval, as telemetry's typed blocks."""

    seconds: float
    inferences: int
    errors: int
    non_finite: int
    latency_ms: LatencyMs
    confidence: ConfidenceHist | None
    class_counts: dict[str, int]
    input_hist: InputHist | None
    detection: DetectionWindow | None = None
    values: list[ValueWindow] = field(default_factory=list)


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


def sample_stride(values_per_channel: int, row_length: int) -> int:
    """The stride that histograms about ``SAMPLE_VALUES`` of a channel's values.

    1 for small inputs; else a prime >= values / SAMPLE_VALUES that does not divide
    the row length, so consecutive samples fall in different columns and every
    row and column of an image is visited.
    """
    if values_per_channel <= 2 * SAMPLE_VALUES:
        return 1
    stride = math.ceil(values_per_channel / SAMPLE_VALUES)
    while not _is_prime(stride) or (row_length > 1 and row_length % stride == 0):
        stride += 1
    return stride


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


class ModelMetrics:
    """Accumulates one window of figures; ``close_window`` returns and resets them."""

    def __init__(self, reference: ReferenceStats | None = None, channel_axis: int = 1,
                 classify: bool = True, task_counter: Any = None) -> None:
        self._lock = threading.Lock()
        self.classify = classify
        """False: outputs are not class scores (counted as inferences, not scored)."""
        self.task_counter = task_counter
        """The task plug-in's output counter (``record``/``close``), or None."""
        self._no_scores = np.zeros((1, 0), dtype=np.float32)
        ref_in = reference.input if reference else None
        ref_out = reference.output if reference else None
        self._edges = np.asarray(ref_in.bin_edges, dtype=np.float64) if ref_in else None
        self._axis = ref_in.channel_axis if ref_in else channel_axis
        # softmax output or logits: as the build recorded it, else decided on the first output
        self._probabilities: bool | None = ref_out.probabilities if ref_out else None
        self._buffers: _Buffers | None = None
        self._stride, self._stride_key = 1, (0, 0)
        self._reset(time.monotonic())

    def _reset(self, now: float) -> None:
        self._start = now
        self._count = self._errors = self._non_finite = 0
        self._latencies: list[float] = []
        self._conf_counts = np.zeros(N_CONF_BINS, dtype=np.int64)
        self._conf_sum = 0.0
        self._classes: dict[str, int] = {}
        self._input_counts: np.ndarray | None = None

    # the hot path --------------------------------------------------------------------
    def record(self, latency_ms: float, inputs: np.ndarray, output: np.ndarray) -> None:
        """Count one successful batch (single examples are buffered, then counted together)."""
        with self._lock:
            if len(self._latencies) < MAX_LATENCIES:
                self._latencies.append(latency_ms)
            if not self.classify:  # rows without scores: counted, not scored
                output = self._no_scores if inputs.shape[:1] == (1,) else \
                    np.zeros((inputs.shape[0] if inputs.ndim else 1, 0), np.float32)
            if output.ndim == 0 or output.shape[0] != 1 or inputs.shape[:1] != (1,):
                self._flush()
                self._count_rows(_rows(output), self._sampled(inputs))
                return
            item = self._strided_item(inputs)
            if self._buffers_for(output, item).add(output, item):
                self._flush()

    def record_error(self) -> None:
        """Count one failed inference."""
        with self._lock:
            self._errors += 1

    def record_non_finite(self) -> None:
        """Count one batch whose outputs held NaN or inf (models not scored as classifiers)."""
        with self._lock:
            self._non_finite += 1

    def score(self, output: np.ndarray) -> tuple:
        """(classes, confidences, all finite) of one output, without counting it."""
        rows = _rows(output)
        if not np.isfinite(rows).all():
            return np.zeros(0, int), np.zeros(0), False
        classes, conf = top1(rows, self._probabilities_of(rows))
        return classes, conf, True

    # buffering -----------------------------------------------------------------------
    def _buffers_for(self, output: np.ndarray, item: np.ndarray | None) -> _Buffers:
        """The buffers for single-example calls of this shape (new ones if it changed)."""
        buffers = self._buffers
        if buffers is None or not buffers.fits(output, item):
            self._flush()
            self._buffers = buffers = _Buffers(output, item)
        return buffers

    def _strided_item(self, inputs: np.ndarray) -> np.ndarray | None:
        """The first example's input as (channels, sampled values), or None without bins."""
        if self._edges is None or inputs.ndim <= self._axis:
            return None
        item = inputs[0]
        per_channel = item if self._axis == 1 else np.moveaxis(item, self._axis - 1, 0)
        flat = per_channel.reshape(per_channel.shape[0], -1)
        return flat[:, ::self._stride_for(flat.shape[1], inputs.shape[-1])]

    def _sampled(self, inputs: np.ndarray) -> np.ndarray | None:
        """A whole batch's inputs as (rows, channels, sampled values), or None."""
        if self._edges is None or inputs.ndim <= self._axis:
            return None
        per_channel = np.moveaxis(np.asarray(inputs, dtype=np.float32), self._axis, 1)
        flat = per_channel.reshape(per_channel.shape[0], per_channel.shape[1], -1)
        return flat[:, :, ::self._stride_for(flat.shape[2], inputs.shape[-1])]

    def _stride_for(self, values: int, row_length: int) -> int:
        """``sample_stride`` for this input shape (remembered; a new shape starts a new count)."""
        if self._stride_key != (values, row_length):
            self._flush()
            self._stride_key = (values, row_length)
            self._stride = sample_stride(values, row_length)
        return self._stride

    def _flush(self) -> None:
        """Count the buffered rows (caller holds the lock)."""
        buffers = self._buffers
        if buffers is not None and buffers.n:
            outputs, inputs = buffers.take()
            self._count_rows(outputs, inputs)

    def _count_rows(self, outputs: np.ndarray, inputs: np.ndarray | None) -> None:
        """Add rows of outputs (rows, scores) and sampled inputs (rows, channels, values)."""
        self._count += len(outputs)
        finite = np.isfinite(outputs).all(axis=1)
        good = outputs[finite] if not finite.all() else outputs
        self._non_finite += int(len(outputs) - len(good))
        if len(good) and good.shape[1]:
            classes, conf = top1(good, self._probabilities_of(good))
            bins = np.minimum((conf * N_CONF_BINS).astype(np.intp), N_CONF_BINS - 1)
            self._conf_counts += np.bincount(bins, minlength=N_CONF_BINS)
            self._conf_sum += float(conf.sum())
            for c, n in zip(*np.unique(classes, return_counts=True)):
                self._classes[str(c)] = self._classes.get(str(c), 0) + int(n)
        if inputs is not None and self._edges is not None:
            hist = channel_counts(inputs, self._edges, axis=1)
            old = self._input_counts
            self._input_counts = hist if old is None or old.shape != hist.shape else old + hist

    def _probabilities_of(self, rows: np.ndarray) -> bool:
        if self._probabilities is None and len(rows) and np.isfinite(rows).all():
            self._probabilities = looks_like_probabilities(rows)
        return bool(self._probabilities)

    # the window ----------------------------------------------------------------------
    def close_window(self) -> Window:
        """The figures since the last call, and a fresh window."""
        now = time.monotonic()
        with self._lock:
            self._flush()
            window = self._snapshot(now)
            self._reset(now)
        if self.task_counter is not None:  # its block goes in the window field it names
            setattr(window, self.task_counter.FIELD, self.task_counter.close())
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
                             per_channel=counts[:, 1:-1].tolist(), sample_stride=self._stride)
        scored = int(self._conf_counts.sum())
        confidence = None if not self.classify else ConfidenceHist(edges=list(CONFIDENCE_EDGES),
                                    counts=self._conf_counts.tolist(),
                                    mean=round(self._conf_sum / scored, 5) if scored else None)
        return Window(
            seconds=round(now - self._start, 3), inferences=self._count, errors=self._errors,
            non_finite=self._non_finite, latency_ms=LatencyMs(*pct), confidence=confidence,
            class_counts=dict(self._classes), input_hist=hist)


def _rows(output: np.ndarray) -> np.ndarray:
    """An output batch as (rows, scores) float32."""
    out = np.asarray(output, dtype=np.float32)
    return out.reshape(out.shape[0], -1) if out.ndim else out.reshape(1, 1)


class _Buffers:
    """Preallocated rows for ``BATCH`` single-example inferences of one shape."""

    def __init__(self, output: np.ndarray, item: np.ndarray | None) -> None:
        self.outputs = np.empty((BATCH, output[0].size), dtype=np.float32)
        self.inputs = None if item is None else np.empty((BATCH, *item.shape), np.float32)
        self.n = 0

    def fits(self, output: np.ndarray, item: np.ndarray | None) -> bool:
        """Whether rows of these shapes go into these buffers."""
        if output[0].size != self.outputs.shape[1]:
            return False
        if item is None or self.inputs is None:
            return item is None and self.inputs is None
        return item.shape == self.inputs.shape[1:]

    def add(self, output: np.ndarray, item: np.ndarray | None) -> bool:
        """Copy one example in; True when the buffers are full."""
        self.outputs[self.n] = output.reshape(-1)
        if item is not None:
            self.inputs[self.n] = item
        self.n += 1
        return self.n == BATCH

    def take(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The filled rows (views; counted before the next add), and empty the buffers."""
        n, self.n = self.n, 0
        return self.outputs[:n], None if self.inputs is None else self.inputs[:n]
