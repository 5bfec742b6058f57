"""The ``classification`` plug-in: the classifier path as it always was. The answer is the
output arrays; telemetry's confidence and class counts come from ``edge_agent.metrics``;
samples carry the top-1 ``prediction``; the golden check compares outputs elementwise."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_agent.tasks.plugin import Inspection, TaskPlugin, register


@register("classification")
class Classification(TaskPlugin):
    """Class scores ``[batch, classes]``."""

    classifies = True

    def inspect(self, outputs: list[np.ndarray], post: Any, metrics: Any) -> Inspection:
        """Top-1 class and confidence of each row (softmax applied to logits)."""
        output = outputs[0]
        classes, conf, finite = metrics.score(output)

        def describe(i: int) -> dict[str, Any]:
            return {"prediction": {"class": int(classes[i]), "confidence": float(conf[i])}}

        return Inspection(finite=finite or output.size == 0, confidence=conf, describe=describe)
