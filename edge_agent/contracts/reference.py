"""The manifest's ``reference_stats``: the calibration set's inputs and outputs, for drift.

Written by the build (``export.refstats``), read by the agent (input bin edges,
channel axis, input range, whether outputs are probabilities) and by the cloud,
which compares each telemetry window with it:

- inputs: ``telemetry.input_hist.per_channel[c]`` against ``input.per_channel[c]``
  (same ``bin_edges``, same counting function; PSI per channel, with ``below`` /
  ``above`` as two extra bins);
- outputs: ``telemetry.class_counts`` against ``output.class_distribution``, and
  ``telemetry.confidence`` against ``output.confidence_hist`` on the same edges;
  detectors' ``detection`` and generic models' per-output ``values`` histograms are
  counted on the device by the same functions (``edge_agent.tasks.stats``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from edge_agent._check import all_non_negative, non_negative, rising
from edge_agent.contracts.record import Record, meta
from edge_agent.contracts.telemetry import ChannelHistogram, ConfidenceHist
from edge_agent.errors import BundleError


def _low_high(values: list) -> str | None:
    if len(values) != 2 or values[0] > values[1]:
        return "must be [low, high] with low <= high"
    return None


@dataclass
class InputReference(ChannelHistogram):
    """Per-channel histogram of the calibration inputs, plus their range, mean and std."""

    ERROR: ClassVar[type[Exception]] = BundleError
    range: list[float] = field(metadata=meta(_low_high))
    """Smallest and largest calibration input value (inputs outside are 'out_of_range')."""
    mean: list[float]
    std: list[float] = field(metadata=meta(all_non_negative))

    def problem(self) -> tuple[str, str] | None:
        found = super().problem()
        channels = len(self.per_channel)
        if found is None and (len(self.mean) != channels or len(self.std) != channels):
            return "mean", f"and 'std' must have one entry per channel ({channels})"
        return found


@dataclass
class OutputReference(Record):
    """Predicted-class distribution and top-1 confidence histogram on the calibration set."""

    ERROR: ClassVar[type[Exception]] = BundleError
    class_distribution: list[float] = field(metadata=meta(all_non_negative))
    """Share of calibration inputs predicted as each class index (sums to 1)."""
    confidence_edges: list[float] = field(metadata=meta(rising))
    confidence_hist: list[int] = field(metadata=meta(all_non_negative))
    probabilities: bool
    """True if the model outputs probabilities; else logits (the device applies softmax)."""
    confidence_mean: float | None = None

    def problem(self) -> tuple[str, str] | None:
        if len(self.confidence_hist) != len(self.confidence_edges) - 1:
            return "confidence_hist", "must have one count per bin of 'confidence_edges'"
        total = sum(self.class_distribution)
        if self.class_distribution and abs(total - 1.0) > 1e-3:
            return "class_distribution", f"must sum to 1, sums to {total:.6g}"
        return None

    def confidence(self) -> ConfidenceHist:
        """The confidence histogram in telemetry's layout, to compare with a window's."""
        return ConfidenceHist(edges=list(self.confidence_edges),
                              counts=list(self.confidence_hist), mean=self.confidence_mean)


@dataclass
class DetectionReference(Record):
    """A detector's outputs on the calibration set, on ``edge_agent.tasks.stats``' fixed edges:
    detections per image, their scores, classes and relative box areas."""

    ERROR: ClassVar[type[Exception]] = BundleError
    count_edges: list[float] = field(metadata=meta(rising))
    count_hist: list[int] = field(metadata=meta(all_non_negative))
    score_edges: list[float] = field(metadata=meta(rising))
    score_hist: list[int] = field(metadata=meta(all_non_negative))
    class_distribution: list[float] = field(metadata=meta(all_non_negative))
    """Share of all detections in each class (all zeros when nothing was detected)."""
    area_edges: list[float] = field(metadata=meta(rising))
    area_hist: list[int] = field(metadata=meta(all_non_negative))
    mean_count: float = field(default=0.0, metadata=meta(non_negative))
    """Detections per image, on average."""

    def problem(self) -> tuple[str, str] | None:
        for name in ("count", "score", "area"):
            edges, hist = getattr(self, f"{name}_edges"), getattr(self, f"{name}_hist")
            if len(hist) != len(edges) - 1:
                return f"{name}_hist", f"must have one count per bin of '{name}_edges'"
        return None


@dataclass
class ValueReference(Record):
    """One output's values on the calibration set (generic models): counts below the first
    edge, in each bin, and above the last edge."""

    ERROR: ClassVar[type[Exception]] = BundleError
    name: str
    edges: list[float] = field(metadata=meta(rising))
    counts: list[int] = field(metadata=meta(all_non_negative))
    mean: float
    std: float = field(metadata=meta(non_negative))

    def problem(self) -> tuple[str, str] | None:
        if len(self.counts) != len(self.edges) + 1:
            return "counts", "must have one count per bin plus one below and one above"
        return None


@dataclass
class ReferenceStats(Record):
    """``reference_stats``: ``n`` calibration examples, their inputs and outputs."""

    ERROR: ClassVar[type[Exception]] = BundleError
    n: int = field(default=0, metadata=meta(non_negative))
    """How many calibration examples; 0 with no input or output part when not recorded."""
    input: InputReference | None = None
    output: OutputReference | None = None
    """Classifiers: predicted classes and top-1 confidence."""
    detection: DetectionReference | None = None
    """Detectors: detections per image, scores, classes and box areas (manifest 1.2)."""
    values: list[ValueReference] = field(default_factory=list)
    """Generic models: a value histogram per output (manifest 1.2)."""

    @property
    def input_range(self) -> tuple[float, float] | None:
        """(low, high) of the calibration inputs, or None when not recorded."""
        return (self.input.range[0], self.input.range[1]) if self.input else None
