"""The manifest's build-time blocks: ``metrics``, ``lineage`` and ``preprocessing``.

Written by ``edgekit build`` (every field it knows) and ``edgekit bundle pack``
(what it can know: size, the model file's hash); a field a writer cannot know
is null. Read by the CLI (``bundle inspect``), the cloud's registry and anyone
reproducing a build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from edge_agent._check import non_empty, non_negative, one_of
from edge_agent.contracts.record import Record, meta
from edge_agent.contracts.vocab import DTYPES, FORMATS, PRECISIONS
from edge_agent.errors import BundleError


class _BundleBlock(Record):
    ERROR: ClassVar[type[Exception]] = BundleError


@dataclass
class Parity(_BundleBlock):
    """How closely outputs follow a reference: max |difference|, and the task's agreement:
    top-1 for classifiers, matched detections for detectors (``edge_agent.tasks.detection``)."""

    max_abs_diff: float = field(metadata=meta(non_negative))
    top1_agreement: float | None = field(default=None, metadata=meta(non_negative))
    """Classifiers: share of inputs with the same top-1 class."""
    export: Parity | None = None
    """The same figures against the (pruned, distilled) torch model it was exported from."""
    detection_agreement: float | None = field(default=None, metadata=meta(non_negative))
    """Detectors: share of images whose detections match (same class, IoU >= 0.9, score
    within ``score_tolerance``, at most one left unmatched)."""
    max_count_diff: int | None = field(default=None, metadata=meta(non_negative))
    max_score_diff: float | None = field(default=None, metadata=meta(non_negative))
    min_iou: float | None = field(default=None, metadata=meta(non_negative))
    images: int | None = field(default=None, metadata=meta(non_negative))
    score_tolerance: float | None = field(default=None, metadata=meta(non_negative))
    per_output_max_abs_diff: list[float] = field(default_factory=list)
    """Models with several outputs: the largest difference of each."""


@dataclass
class Metrics(_BundleBlock):
    """Figures measured at build time, next to the original model's (``baseline_*``)."""

    size_bytes: int | None = field(default=None, metadata=meta(non_negative))
    metric_name: str | None = None
    metric: float | None = None
    """The chosen candidate's score on the validation set (e.g. top-1 accuracy)."""
    baseline_metric: float | None = None
    allowed_drop: float | None = field(default=None, metadata=meta(non_negative))
    format: str | None = field(default=None, metadata=meta(one_of(*FORMATS)))
    precision: str | None = field(default=None, metadata=meta(one_of(*PRECISIONS)))
    method: str | None = None
    """The quantizer that made the file (e.g. ``ort-static``), or null for fp32."""
    prune_ratio: float | None = field(default=None, metadata=meta(non_negative))
    latency_ms: float | None = field(default=None, metadata=meta(non_negative))
    latency_ms_1thread: float | None = field(default=None, metadata=meta(non_negative))
    threads: int | None = field(default=None, metadata=meta(non_negative))
    parity: Parity | None = None
    baseline_latency_ms: float | None = field(default=None, metadata=meta(non_negative))
    baseline_latency_ms_1thread: float | None = field(default=None, metadata=meta(non_negative))
    baseline_size_bytes: int | None = field(default=None, metadata=meta(non_negative))
    speedup: float | None = field(default=None, metadata=meta(non_negative))
    latency_host: str | None = None
    """Where the latencies were measured (the build host, not the device)."""


@dataclass
class Compression(_BundleBlock):
    """How the shipped model was made smaller: its prune ratio and each technique's summary."""

    prune_ratio: float = field(default=0.0, metadata=meta(non_negative))
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Technique name (``prune``, ``distill``) -> what it did (its own summary figures)."""


def _recipe(value: Any) -> str | None:
    return None if isinstance(value, (dict, str)) else "must be an object or a string"


@dataclass
class Lineage(_BundleBlock):
    """Where the model came from: hashes of its sources, the recipe, tools, parent version."""

    source_model: str | None = None
    """The model factory (``file.py:NAME``) of a build."""
    source_weights: str | None = None
    source_weights_sha256: str | None = None
    """sha256 of the torch weights (or of the factory's state_dict when no file)."""
    source_model_sha256: str | None = None
    """sha256 of the model file given to ``bundle pack`` (bring-your-own model)."""
    data: str | None = None
    recipe: Any = field(default=None, metadata=meta(_recipe))
    """The build's compression recipe (JSON, versioned by ``compress``), or the string
    ``bring-your-own-model`` for ``bundle pack``."""
    calibration_sha256: str | None = None
    tools: dict[str, str] = field(default_factory=dict)
    """Versions of the packages that built it (torch, onnxruntime, ...)."""
    parent_version: str | None = None
    """The model version this one replaces, if any."""
    compression: Compression | None = None


def _steps(value: list) -> str | None:
    for i, step in enumerate(value):
        if not isinstance(step, dict) or not isinstance(step.get("op"), str) or not step["op"]:
            return f"[{i}] must be an object with an 'op' name and that op's parameters"
    return None


@dataclass
class Preprocessing(_BundleBlock):
    """How a raw input becomes the model's input (from the user's data function)."""

    source: str = ""
    """What the raw input is, in words."""
    steps: list[dict[str, Any]] = field(default_factory=list, metadata=meta(_steps))
    """Ordered operations, each ``{"op": NAME, ...its parameters}``."""
    layout: str | None = field(default=None, metadata=meta(non_empty))
    dtype: str | None = field(default=None, metadata=meta(one_of(*DTYPES)))
