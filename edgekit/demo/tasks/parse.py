"""A detector agent's answer to ``/v1/predict``, read into ``Detections``."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from edge_agent.contracts.task import DetectionSpec
from edge_agent.tasks.detection import Detections


@functools.lru_cache(maxsize=1)
def detection_spec() -> DetectionSpec:
    """The digit-boxes detector's task block (``examples/digit_boxes/data.py``)."""
    from examples.digit_boxes.data import TASK

    return DetectionSpec.from_dict(TASK["detection"], "task.detection")


def answer_detections(doc: dict[str, Any]) -> Detections:
    """The detections of the one image sent: the answer's ``detections`` (rows of class,
    score and box in input pixels; ``images[i].detections`` for a batch)."""
    rows = doc["images"][0]["detections"] if "images" in doc else doc["detections"]
    if not rows:
        return Detections.empty()
    return Detections(np.asarray([r["box"] for r in rows], np.float32).reshape(-1, 4),
                      np.asarray([r["score"] for r in rows], np.float32),
                      np.asarray([r["class"] for r in rows], np.int64))
