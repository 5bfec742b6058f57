"""The build-side interface of a task and its registry."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from compress.errors import UserCodeError
from compress.evaluation import Metric
from compress.outputs import as_list
from compress.recipe import DistillConfig
from compress.registry import Registry
from edge_agent.contracts.task import Task
from edge_agent.errors import EdgekitError
from edge_agent.golden import tolerance_for


class BuildTask:
    """One task's build-side behaviour; subclasses register under their ``kind``."""

    kind: ClassVar[str] = ""
    metric_name: ClassVar[str] = ""
    metric_unit: ClassVar[str] = "fraction"

    def __init__(self, spec: Task) -> None:
        self.spec = spec

    def default_metric(self) -> Metric | None:
        """The metric used when the data module gives none (None: one is required)."""
        raise NotImplementedError

    def check_outputs(self, outputs: Any, model: str) -> None:
        """Raise a one-line ``UserCodeError`` when the model's outputs do not fit the task."""
        raise NotImplementedError

    def distill_loss(self, student: Any, teacher: Any, labels: torch.Tensor,
                     cfg: DistillConfig) -> torch.Tensor:
        """The loss that trains a student from the teacher's raw outputs (and the labels)."""
        raise NotImplementedError

    def parity(self, outputs: Any, reference: Any, precision: str) -> dict[str, Any]:
        """How closely ``outputs`` (numpy, a file's) follow ``reference`` (numpy)."""
        raise NotImplementedError

    def extra_figures(self, outputs: Any, labels: torch.Tensor) -> dict[str, Any]:
        """Task figures the report shows beside the metric (e.g. mAP@0.5)."""
        return {}

    def picture(self, image: np.ndarray, original: Any, shipped: Any,
                labels: list[str]) -> str | None:
        """A base64 PNG for the report showing one input's outputs (None: no picture)."""
        return None

    def export_problem(self, outputs: Any, reference: Any) -> str | None:
        """Why an fp32 file does not compute what its torch model computes, or None.

        Exactness is judged on the raw outputs, whatever the task: an fp32 export must
        match elementwise within the golden check's fp32 tolerance.
        """
        refs = [np.asarray(r, dtype=np.float64) for r in as_list(reference)]
        outs = [np.asarray(o, dtype=np.float64) for o in as_list(outputs)]
        if [o.shape for o in outs] != [r.shape for r in refs]:
            return (f"fp32 file's outputs {[list(o.shape) for o in outs]} differ from its torch "
                    f"model's {[list(r.shape) for r in refs]}")
        atol, rtol = tolerance_for("fp32", refs)
        worst = max(float(np.max(np.abs(o - r))) if o.size else 0.0
                    for o, r in zip(outs, refs, strict=True))
        allowed = atol + rtol * max(float(np.max(np.abs(r))) if r.size else 0.0 for r in refs)
        if not worst <= allowed:
            return f"fp32 file differs from its torch model by {worst:.3g} (allowed {allowed:.3g})"
        return None


TASKS: Registry[type[BuildTask]] = Registry("task", UserCodeError)


def build_task(spec: Task) -> BuildTask:
    """The registered plug-in for ``spec.kind``, bound to the spec."""
    return TASKS.get(spec.kind)(spec)


def parse_task(doc: Any, where: str) -> Task:
    """The data module's ``"task"`` (or ``bundle pack --task``'s) as a checked ``Task``."""
    if doc is None:
        return Task()
    if isinstance(doc, Task):
        return doc
    if isinstance(doc, str):
        doc = {"kind": doc}
    try:
        return Task.from_dict(doc, "task")
    except EdgekitError as exc:
        raise UserCodeError(f"{where}: {exc} (see edge_agent/contracts/task.py)") from exc
