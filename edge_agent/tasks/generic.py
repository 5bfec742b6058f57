"""The ``generic`` plug-in: any numeric outputs. The answer names each output; telemetry
counts each output's values on its reference edges (``ValueWindow``); samples are kept only
for inputs out of the reference range (there is no confidence); the golden check compares
outputs elementwise."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_agent.tasks.options import PredictOptions
from edge_agent.tasks.plugin import Inspection, TaskPlugin, register
from edge_agent.tasks.windows import ValueCounter


@register("generic")
class Generic(TaskPlugin):
    """Named numeric outputs."""

    def output_names(self) -> list[str]:
        """The task's ``output_names`` when they name every output, else the tensors' names."""
        names = list(self.manifest.task.output_names)
        return names if len(names) == len(self.manifest.outputs) else \
            [o.name for o in self.manifest.outputs]

    def new_counter(self) -> ValueCounter | None:
        values = self.manifest.reference_stats.values
        return ValueCounter(values, self.output_names()) if values else None

    def count(self, outputs: list[np.ndarray], post: Any, counter: Any) -> None:
        counter.record(outputs)

    def answer(self, outputs: list[np.ndarray], post: Any, options: PredictOptions) -> Any:
        """``{"outputs": {name: array}}``."""
        return {"outputs": dict(zip(self.output_names(), outputs))}

    def inspect(self, outputs: list[np.ndarray], post: Any, metrics: Any) -> Inspection:
        batch = outputs[0].shape[0] if outputs and outputs[0].ndim else 1
        return Inspection(finite=self.finite(outputs, post), confidence=np.ones(batch))
