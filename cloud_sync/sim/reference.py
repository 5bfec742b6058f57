"""What simulated devices report: telemetry drawn from a bundle's reference statistics.

Per window, input histograms are sampled per channel from the reference's bin shares
(``below``/``above`` included), class counts from the reference class distribution,
and the confidence histogram from the reference confidence histogram. A drifted device
draws from a ``Drift``-shifted reference instead: input mass moves up the bins, one
class takes a share of every other, confidence mass moves down the bins. Without a
bundle, ``synthetic_reference()`` stands in (3 channels, 8 bins, 10 classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.contracts import InputReference, OutputReference, ReferenceStats
from edge_agent.errors import EdgekitError


@dataclass(frozen=True)
class Drift:
    """How far a drifted device moves from the reference (0: not at all, 1: fully)."""

    input_shift: float = 0.5
    class_takeover: float = 0.5
    confidence_drop: float = 0.4


@dataclass(frozen=True)
class Shares:
    """Probabilities to sample a window from: per channel (below, bins..., above),
    per class, and per confidence bin."""

    inputs: np.ndarray
    classes: np.ndarray
    confidence: np.ndarray


def synthetic_reference() -> ReferenceStats:
    """A plausible reference for a 3-channel image model with 10 classes."""
    edges = [round(i / 8, 3) for i in range(9)]
    bell = [40, 90, 160, 210, 210, 160, 90, 40]
    per_channel = [bell, bell[1:] + bell[:1], bell[2:] + bell[:2]]
    conf_edges = [round(i / 10, 1) for i in range(11)]
    return ReferenceStats(
        n=1000,
        input=InputReference(bin_edges=edges, channel_axis=1, below=[0, 0, 0], above=[0, 0, 0],
                             per_channel=per_channel, range=[0.0, 1.0], mean=[0.5] * 3,
                             std=[0.2] * 3),
        output=OutputReference(class_distribution=[0.1] * 10, confidence_edges=conf_edges,
                               confidence_hist=[0, 0, 5, 10, 20, 40, 80, 150, 250, 445],
                               probabilities=True, confidence_mean=0.82))


def reference_from_bundle(path: Path) -> tuple[ReferenceStats, str, str, str]:
    """(reference stats, model name, model version, profile) of a bundle (signature not
    checked: the simulator only borrows its statistics)."""
    from edge_agent.bundle.reader import read_manifest_unverified

    manifest = read_manifest_unverified(Path(path))
    ref = manifest.reference_stats
    if ref.input is None or ref.output is None:
        raise EdgekitError(f"bundle {path} has no input/output reference statistics; build it "
                           "with calibration data, or run the simulator without --bundle")
    return ref, manifest.model.name, str(manifest.model.version), manifest.profile


def _normalise(values: np.ndarray) -> np.ndarray:
    values = np.clip(np.asarray(values, dtype=float), 0, None) + 1e-9
    return values / values.sum(axis=-1, keepdims=True)


def shares(ref: ReferenceStats, drift: Drift | None = None) -> Shares:
    """The sampling probabilities of ``ref``, shifted by ``drift`` when given."""
    inp, out = ref.input, ref.output
    inputs = np.array([[b, *row, a] for b, a, row in
                       zip(inp.below, inp.above, inp.per_channel, strict=True)], dtype=float)
    classes = np.array(out.class_distribution, dtype=float)
    confidence = np.array(out.confidence_hist, dtype=float)
    if drift is not None:
        inputs = _shift(inputs, drift.input_shift)
        classes = (1 - drift.class_takeover) * classes
        classes[0] += drift.class_takeover
        confidence = _shift(confidence[None, :], -drift.confidence_drop)[0]
    return Shares(_normalise(inputs), _normalise(classes), _normalise(confidence))


def _shift(rows: np.ndarray, fraction: float) -> np.ndarray:
    """Move ``fraction`` of each row's width worth of bins up (negative: down)."""
    bins = max(1, round(abs(fraction) * rows.shape[1]))
    moved = np.roll(rows, bins if fraction > 0 else -bins, axis=1)
    edge = slice(0, bins) if fraction > 0 else slice(rows.shape[1] - bins, None)
    moved[:, edge] = 0
    if fraction > 0:
        moved[:, -1] += rows[:, rows.shape[1] - bins:].sum(axis=1)
    else:
        moved[:, 0] += rows[:, :bins].sum(axis=1)
    return moved


def draw_window(rng: np.random.Generator, s: Shares, inferences: int, values_per_input: int
                ) -> tuple[list[list[int]], list[int], list[int], dict[str, int], list[int]]:
    """(per_channel, below, above, class_counts, confidence_counts) for one window."""
    counts = np.stack([rng.multinomial(inferences * values_per_input, p) for p in s.inputs])
    classes = rng.multinomial(inferences, s.classes)
    conf = rng.multinomial(inferences, s.confidence)
    return (counts[:, 1:-1].tolist(), counts[:, 0].tolist(), counts[:, -1].tolist(),
            {str(i): int(n) for i, n in enumerate(classes) if n}, conf.tolist())
