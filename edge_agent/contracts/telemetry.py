"""The typed blocks inside device messages: telemetry figures, the model served, samples.

Written by the agent (``edge_agent.metrics``, ``Agent.telemetry_tick``), read by
the cloud. Histograms use the same layout as the bundle's reference statistics
(``edge_agent.contracts.reference``), so drift is a comparison of like with like.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import ClassVar

from edge_agent._check import all_non_negative, non_empty, non_negative, positive, rising
from edge_agent.contracts.record import Record, meta
from edge_agent.contracts.vocab import DTYPE_SIZES, DTYPES
from edge_agent.errors import ProtocolError


class _Block(Record):
    ERROR: ClassVar[type[Exception]] = ProtocolError


@dataclass
class ModelRef(_Block):
    """The model a message is about: its name and version (as in the bundle manifest)."""

    name: str = field(metadata=meta(non_empty))
    version: str = field(metadata=meta(non_empty))


@dataclass
class ModelState(_Block):
    """Telemetry's ``model``: what was served in the window, and how it behaved."""

    name: str = field(metadata=meta(non_empty))
    version: str = field(metadata=meta(non_empty))
    non_finite: int = field(default=0, metadata=meta(non_negative))
    """Batches whose output held NaN or inf."""
    probation: bool = False
    """True while a just-installed update is still being judged."""


@dataclass
class LatencyMs(_Block):
    """Latency percentiles of the window in milliseconds; null when nothing ran."""

    p50: float | None = field(default=None, metadata=meta(non_negative))
    p95: float | None = field(default=None, metadata=meta(non_negative))
    p99: float | None = field(default=None, metadata=meta(non_negative))


@dataclass
class ConfidenceHist(_Block):
    """Top-1 confidence: counts per bin between ``edges``, and the mean (null when none)."""

    edges: list[float] = field(metadata=meta(rising))
    counts: list[int] = field(metadata=meta(all_non_negative))
    mean: float | None = None

    def problem(self) -> tuple[str, str] | None:
        if len(self.counts) != len(self.edges) - 1:
            return "counts", f"must have {len(self.edges) - 1} entries (one per bin), " \
                             f"got {len(self.counts)}"
        if self.mean is not None and not 0.0 <= self.mean <= 1.0:
            return "mean", f"must be between 0 and 1, got {self.mean}"
        return None


@dataclass
class ChannelHistogram(_Block):
    """Per-channel counts of input values on fixed bin edges (the reference's edges).

    ``per_channel[c][b]`` counts channel ``c``'s values in bin ``b`` (the last bin
    includes its right edge); ``below[c]`` / ``above[c]`` count values outside the edges.
    """

    bin_edges: list[float] = field(metadata=meta(rising))
    channel_axis: int = field(metadata=meta(non_negative))
    below: list[int] = field(metadata=meta(all_non_negative))
    above: list[int] = field(metadata=meta(all_non_negative))
    per_channel: list[list[int]]

    def problem(self) -> tuple[str, str] | None:
        channels, bins = len(self.per_channel), len(self.bin_edges) - 1
        if len(self.below) != channels or len(self.above) != channels:
            return "below", f"and 'above' must have one entry per channel ({channels})"
        for c, row in enumerate(self.per_channel):
            if len(row) != bins or any(v < 0 for v in row):
                return f"per_channel[{c}]", f"must hold {bins} counts >= 0 (one per bin)"
        return None


@dataclass
class InputHist(ChannelHistogram):
    """Telemetry's ``input_hist``: the window's inputs on the bundle's reference bins.

    To stay cheap on large inputs the agent counts every ``sample_stride``-th value of
    each channel (a deterministic stride over the channel's flattened values, a prime
    that does not divide the row length, so every row and column is visited). The
    counts are what was counted: a channel's sample size is ``below + sum(per_channel)
    + above``, never ``inferences x values``; proportions compare with the reference's.
    """

    sample_stride: int = field(default=1, metadata=meta(positive))


@dataclass
class OutboxFigures(_Block):
    """The device's durable outbox: messages waiting, and dropped to stay under its caps."""

    queued: int = field(default=0, metadata=meta(non_negative))
    queued_bytes: int = field(default=0, metadata=meta(non_negative))
    dropped: int = field(default=0, metadata=meta(non_negative))
    dropped_bytes: int = field(default=0, metadata=meta(non_negative))


@dataclass
class SystemFigures(_Block):
    """Process CPU (% of one core), RSS, hottest SoC zone and free disk; null where unknown."""

    cpu_percent: float | None = field(default=None, metadata=meta(non_negative))
    rss_mb: float | None = field(default=None, metadata=meta(non_negative))
    temp_c: float | None = None
    disk_free_mb: float | None = field(default=None, metadata=meta(non_negative))


@dataclass
class Prediction(_Block):
    """A sample's prediction: top-1 class index (JSON key ``class``) and its confidence."""

    class_index: int = field(metadata=meta(non_negative, key="class"))
    confidence: float = field(metadata=meta(non_negative))


def _base64(value: str) -> str | None:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "must be base64"
    return None


def _dtype(value: str) -> str | None:
    return None if value in DTYPES else f"must be one of {', '.join(DTYPES)}; got {value!r}"


@dataclass
class EncodedInput(_Block):
    """An input array: numpy dtype name, shape, and base64 of its raw C-order bytes."""

    dtype: str = field(metadata=meta(_dtype))
    shape: list[int] = field(metadata=meta(all_non_negative))
    data: str = field(metadata=meta(_base64))

    def problem(self) -> tuple[str, str] | None:
        expected = DTYPE_SIZES[self.dtype]
        for dim in self.shape:
            expected *= dim
        decoded = len(self.data) // 4 * 3 - self.data[-2:].count("=")
        if decoded != expected:
            return "data", f"holds {decoded} bytes; dtype and shape need {expected}"
        return None


def _same_length(block: Record, pairs: tuple[tuple[str, str, int], ...]) -> tuple[str, str] | None:
    """The first ``(hist, edges, extra)`` pair whose counts are not ``len(edges) - 1 + extra``."""
    for hist, edges, extra in pairs:
        want = len(getattr(block, edges)) - 1 + extra
        if len(getattr(block, hist)) != want:
            return hist, f"must have {want} counts (one per bin of '{edges}'" + \
                (", plus one below and one above)" if extra else ")")
    return None


@dataclass
class DetectionWindow(_Block):
    """Telemetry's ``detection`` (protocol 1.3): a detector's output figures over the window.

    Counted by ``edge_agent.tasks.stats.detection_counts`` on the edges of the bundle's
    ``reference_stats.detection``, so the cloud compares like with like. ``frames`` is the
    number of images post-processed (the drift tests' sample size: boxes in one frame are
    correlated, so boxes are not independent draws); ``empty_frames`` found nothing.
    """

    frames: int = field(metadata=meta(non_negative))
    empty_frames: int = field(metadata=meta(non_negative))
    count_edges: list[float] = field(metadata=meta(rising))
    count_hist: list[int] = field(metadata=meta(all_non_negative))
    """Frames by how many detections they had."""
    score_edges: list[float] = field(metadata=meta(rising))
    score_hist: list[int] = field(metadata=meta(all_non_negative))
    """Detections by score."""
    class_counts: list[int] = field(metadata=meta(all_non_negative))
    """Detections per class index."""
    area_edges: list[float] = field(metadata=meta(rising))
    area_hist: list[int] = field(metadata=meta(all_non_negative))
    """Detections by box area relative to the input image."""
    mean_score: float | None = None
    """Mean score of the window's detections (null when there were none)."""

    def problem(self) -> tuple[str, str] | None:
        if self.empty_frames > self.frames:
            return "empty_frames", f"must be <= frames ({self.frames})"
        return _same_length(self, (("count_hist", "count_edges", 0),
                                   ("score_hist", "score_edges", 0),
                                   ("area_hist", "area_edges", 0)))


@dataclass
class ValueWindow(_Block):
    """One entry of telemetry's ``values`` (protocol 1.3): a generic model's output ``name``
    over the window, on the edges of the bundle's ``reference_stats.values`` entry; counts
    below the first edge, in each bin, then above the last edge."""

    name: str = field(metadata=meta(non_empty))
    edges: list[float] = field(metadata=meta(rising))
    counts: list[int] = field(metadata=meta(all_non_negative))
    mean: float | None = None

    def problem(self) -> tuple[str, str] | None:
        return _same_length(self, (("counts", "edges", 2),))


@dataclass
class SampleDetection(_Block):
    """One detection in a sample (protocol 1.3): box ``[x1, y1, x2, y2]`` in the model's
    input pixels, score, class index (JSON key ``class``)."""

    box: list[float]
    score: float = field(metadata=meta(non_negative))
    class_index: int = field(metadata=meta(non_negative, key="class"))

    def problem(self) -> tuple[str, str] | None:
        if len(self.box) != 4:
            return "box", f"must be [x1, y1, x2, y2], got {len(self.box)} numbers"
        return None
