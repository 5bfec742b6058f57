"""Per-layer sensitivity of an int8 file: each quantizable layer's share of int8's loss.

Method: quantize ONE layer at a time (every other layer stays float), run the file in
its real runtime on the selection split, and score it. A layer's ``drop`` is the float
metric minus that score; its ``share`` is the drop over the full int8 file's drop.

Why one layer in int8 rather than one layer in float (everything int8 but one, the
order NNCF's accuracy control and INC's fallback walk)? In a QDQ graph an activation
tensor is quantized by its producer and again by each consumer, so keeping one of
them in float leaves the tensor quantized by the other: an outlier tensor between two
layers shows no recovery from either, and that ranking is blind exactly where int8
hurts (``tests/export/test_sensitivity.py`` measures both on such a model). With one
layer quantized, each layer that touches the outlier tensor shows the whole loss and
ranks first; the mixed-precision search then keeps them in float together. It costs
one quantize (calibration is cached) and one run of the selection split per layer.

Layers with the same drop (a coarse metric often gives 0 for most) are ordered by
``output_error``: the mean squared difference between that file's outputs and the float
model's, over the float outputs' mean square; a continuous figure, NNCF's tie-breaker too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compress.outputs import Outputs, as_list

# layer name -> (metric on the selection split, outputs) with only that layer in int8
Probe = Callable[[str], tuple[float, Outputs]]


@dataclass(frozen=True)
class LayerSensitivity:
    """What quantizing one layer alone costs."""

    layer: str
    metric: float
    drop: float
    share: float | None  # drop over the full int8 file's drop (None when that is 0)
    output_error: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for the report."""
        return {"layer": self.layer, "metric": round(self.metric, 6),
                "drop": round(self.drop, 6),
                "share": None if self.share is None else round(self.share, 4),
                "output_error": float(f"{self.output_error:.4g}")}


@dataclass
class SensitivityRanking:
    """Layers, most sensitive first, and what they were measured against."""

    layers: list[LayerSensitivity]
    float_metric: float
    int8_metric: float
    seconds: float
    unranked: list[str] = field(default_factory=list)  # left out: the time budget ran out

    def order(self) -> list[str]:
        """Layer names, most sensitive first (the unranked ones last, in graph order)."""
        return [s.layer for s in self.layers] + self.unranked

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for the report."""
        return {"method": "one layer in int8 at a time, the rest float",
                "float_metric": round(self.float_metric, 6),
                "int8_metric": round(self.int8_metric, 6), "seconds": round(self.seconds, 2),
                "layers": [s.to_dict() for s in self.layers], "unranked": list(self.unranked)}


def output_error(outputs: Outputs, reference: Outputs) -> float:
    """Mean squared difference from ``reference`` over its mean square, all outputs."""
    diff = ref = 0.0
    for got, want in zip(as_list(outputs), as_list(reference), strict=True):
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        diff += float(np.mean((got - want) ** 2))
        ref += float(np.mean(want ** 2))
    return diff / max(ref, 1e-12)


def rank_layers(layers: list[str], probe: Probe, float_metric: float, int8_metric: float,
                reference: Outputs, out_of_time: Callable[[], bool] = lambda: False
                ) -> SensitivityRanking:
    """Probe each layer alone, in graph order, until done or ``out_of_time``; most
    sensitive first (by drop, then output error)."""
    started = time.monotonic()
    loss = float_metric - int8_metric
    measured, unranked = [], []
    for i, layer in enumerate(layers):
        if i and out_of_time():
            unranked = list(layers[i:])
            break
        metric, outputs = probe(layer)
        drop = float_metric - metric
        measured.append(LayerSensitivity(layer, metric, drop, drop / loss if loss > 0 else None,
                                         output_error(outputs, reference)))
    measured.sort(key=lambda s: (-s.drop, -s.output_error))
    return SensitivityRanking(measured, float_metric, int8_metric,
                              time.monotonic() - started, unranked)
