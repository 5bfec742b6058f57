"""The manifest's ``task`` block: what the model computes, and how to read its outputs.

- ``classification`` (the default, and what a manifest without the block means): one
  output of class scores ``[batch, classes]``.
- ``detection``: an object detector; ``detection`` says how its raw outputs decode
  (``layout``, see ``edge_agent.tasks.layouts``) and how they are post-processed
  (score / IoU thresholds, maximum detections). Boxes are in input pixels unless
  ``normalized_boxes`` says the model emits them as fractions of the input size.
- ``generic``: any numeric outputs (regression, embeddings, anomaly scores, several
  outputs); ``output_names`` may name them for people.

Written by ``edgekit build`` (from the data module's ``"task"``) and ``edgekit bundle
pack --task``; read by the agent (post-processing, telemetry) and the cloud (drift,
rollout health). New in manifest schema 1.2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from edge_agent._check import non_negative, one_of, positive
from edge_agent.contracts.record import Record, meta
from edge_agent.errors import BundleError

TASKS: tuple[str, ...] = ("classification", "detection", "generic")
LAYOUTS: tuple[str, ...] = ("yolov8", "yolov5", "boxes_scores")
"""Detection output layouts (decode functions in ``edge_agent.tasks.layouts``):

- ``yolov8``: one output ``[1, 4 + C, N]``: centre x, centre y, width, height, then C class
  scores; no objectness (Ultralytics' ONNX/TFLite export of YOLOv8 / YOLO11).
- ``yolov5``: one output ``[1, N, 5 + C]``: centre x/y, width, height, objectness, C scores.
- ``boxes_scores``: two outputs, boxes ``[1, N, 4]`` (x1 y1 x2 y2) and scores ``[1, N, C]``.
"""


def _fraction(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else "must be between 0 and 1"


def _size(values: list) -> str | None:
    if len(values) != 2 or any(not isinstance(v, int) or v <= 0 for v in values):
        return "must be [height, width] in pixels"
    return None


class _Block(Record):
    ERROR: ClassVar[type[Exception]] = BundleError


@dataclass
class DetectionSpec(_Block):
    """How a detector's raw outputs become boxes."""

    layout: str = field(metadata=meta(one_of(*LAYOUTS)))
    num_classes: int = field(metadata=meta(positive))
    input_size: list[int] = field(metadata=meta(_size))
    """[height, width] of the model's input image, in pixels."""
    labels: list[str] = field(default_factory=list)
    score_threshold: float = field(default=0.25, metadata=meta(_fraction))
    iou_threshold: float = field(default=0.45, metadata=meta(_fraction))
    max_detections: int = field(default=100, metadata=meta(positive))
    normalized_boxes: bool = False
    """True when box coordinates are fractions of the input size (0..1), not pixels."""

    def problem(self) -> tuple[str, str] | None:
        if self.labels and len(self.labels) != self.num_classes:
            return "labels", f"must name all {self.num_classes} classes (got {len(self.labels)})"
        return None


@dataclass
class Task(_Block):
    """``task``: the kind of model and, for a detector, how to decode it."""

    kind: str = field(default="classification", metadata=meta(one_of(*TASKS)))
    detection: DetectionSpec | None = None
    output_names: list[str] = field(default_factory=list)
    """Names of the outputs, for people (generic models); empty when not given."""
    version: int = field(default=1, metadata=meta(non_negative))
    """The task block's own version: a reader refuses a block newer than it knows."""

    def problem(self) -> tuple[str, str] | None:
        if self.kind == "detection" and self.detection is None:
            return "detection", "is required when kind is 'detection'"
        if self.kind != "detection" and self.detection is not None:
            return "detection", f"is only for kind 'detection', not {self.kind!r}"
        if self.version > TASK_BLOCK_VERSION:
            return "version", (f"is {self.version}; this edgekit reads task blocks up to "
                               f"{TASK_BLOCK_VERSION}: upgrade edgekit")
        return None

    def to_dict(self) -> dict[str, Any]:
        doc = super().to_dict()
        if doc.get("detection") is None:
            doc.pop("detection", None)
        return doc


TASK_BLOCK_VERSION = 1
