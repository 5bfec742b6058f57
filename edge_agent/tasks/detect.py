"""The ``detection`` plug-in.

- Every inference is post-processed at the manifest's thresholds (``postprocess``) and
  counted into telemetry's ``DetectionWindow``; a request that overrides a threshold or the
  maximum is post-processed again with its own values, for its answer only.
- The answer: ``{"detections": [{"box", "score", "class", "label"}]}`` for one image; a
  batch of several answers ``{"images": [{"detections": [...]}, ...]}``. Boxes are
  x1 y1 x2 y2 in the model input's pixels, or in the caller's image's pixels when the
  request gives ``image_size`` (the manifest's resize / letterbox undone:
  ``edge_agent.tasks.geometry``).
- Samples: an image is ``low_confidence`` when one of its detections scores below the
  agent's ``low_confidence`` setting (a box near the threshold that could flip); an image
  with no detection is not. A sample carries its ``detections`` (the input's pixels).
- Golden check: the golden outputs post-processed on both sides must agree by the task's
  parity rule (``edge_agent.tasks.detection.agreement``), image by image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_agent.golden import GoldenResult
from edge_agent.tasks.detection import Detections, agreement, postprocess
from edge_agent.tasks.geometry import geometric_steps, to_caller_pixels
from edge_agent.tasks.options import PredictOptions
from edge_agent.tasks.plugin import Inspection, TaskPlugin, register
from edge_agent.tasks.windows import DetectionCounter

SCORE_TOLERANCE = {"fp32": 0.01, "fp16": 0.02, "int8": 0.05, "int8-dynamic": 0.05}
"""Golden check: how far a detection's score may move between build and device."""


@register("detection")
class Detection(TaskPlugin):
    """Boxes, scores and classes after decoding the layout and NMS."""

    def __init__(self, manifest: Any) -> None:
        super().__init__(manifest)
        self.spec = manifest.task.detection
        self.labels = list(self.spec.labels or manifest.labels)
        self.geometry = geometric_steps(manifest.preprocessing.steps)

    def new_counter(self) -> DetectionCounter:
        return DetectionCounter(self.spec)

    def postprocess(self, outputs: list[np.ndarray]) -> list[Detections]:
        return postprocess(outputs, self.spec)

    def count(self, outputs: list[np.ndarray], post: list[Detections], counter: Any) -> None:
        counter.record(post)

    def answer(self, outputs: list[np.ndarray], post: list[Detections],
               options: PredictOptions) -> dict[str, Any]:
        """``{"detections": [...]}`` for one image, ``{"images": [...]}`` for several."""
        if any(v is not None for v in (options.score_threshold, options.iou_threshold,
                                        options.max_detections)):
            post = postprocess(outputs, self.spec, options.score_threshold,
                               options.iou_threshold, options.max_detections)
        images = [{"detections": self._in_caller_pixels(d, options).to_list(self.labels)}
                  for d in post]
        return images[0] if len(images) == 1 else {"images": images}

    def _in_caller_pixels(self, found: Detections, options: PredictOptions) -> Detections:
        if options.image_size is None or not len(found):
            return found
        boxes = to_caller_pixels(found.boxes, self.geometry, self.spec.input_size,
                                 options.image_size)
        return Detections(boxes, found.scores, found.classes, found.finite)

    def finite(self, outputs: list[np.ndarray], post: list[Detections]) -> bool:
        """What post-processing read was finite (the best score of every box, kept boxes)."""
        return all(d.finite for d in post)

    def inspect(self, outputs: list[np.ndarray], post: list[Detections],
                metrics: Any) -> Inspection:
        """Confidence of an image: its lowest detection score (1 with no detection)."""
        confidence = np.array([float(d.scores.min()) if len(d) else 1.0 for d in post])

        def describe(i: int) -> dict[str, Any]:
            return {"detections": post[i].to_list()}

        return Inspection(finite=self.finite(outputs, post), confidence=confidence,
                          describe=describe)

    def golden(self, expected: list[np.ndarray], actual: list[np.ndarray]) -> GoldenResult:
        """Both sides' detections agree image by image (the parity rule)."""
        raw = super().golden(expected, actual)
        if len(expected) != len(actual) or any(e.shape != a.shape
                                               for e, a in zip(expected, actual)):
            return raw
        tolerance = SCORE_TOLERANCE.get(self.manifest.target.precision, 0.05)
        want, got = postprocess(expected, self.spec), postprocess(actual, self.spec)
        figures = agreement(want, got, tolerance)
        ok = all(d.finite for d in got) and figures["detection_agreement"] >= 1.0
        why = "" if ok else (
            f"detections of {figures['images']} golden image(s) disagree by the parity rule "
            f"(agreement {figures['detection_agreement']:.3f}, count diff up to "
            f"{figures['max_count_diff']}, score diff up to {figures['max_score_diff']:.4g} "
            f"> {tolerance}, or NaN/inf)")
        return GoldenResult(ok, raw.max_abs_diff, raw.atol, raw.rtol, why)
