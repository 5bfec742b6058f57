"""Turn the user's model and data into the fixed inputs of a build, checking they fit."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from compress import progress
from compress.errors import UserCodeError
from compress.evaluation import batches_in, collect, predict, score
from compress.outputs import to_numpy
from compress.recipe import Recipe
from compress.tasks import BuildTask, build_task
from compress.usercode import UserData
from edge_agent.contracts.build_info import Preprocessing
from edge_agent.contracts.task import Task
from edge_agent.errors import EdgekitError, first_line
from export.evaluate import EvalData
from export.lineage import file_sha256, state_dict_sha256, tensors_sha256


@dataclass
class BuildInputs:
    """The teacher, the measurement data and what the manifest needs to say about them."""

    teacher: torch.nn.Module
    data: EvalData
    train: Any
    baseline_metric: float
    metric_name: str
    calibration_sha256: str
    source: dict[str, Any]
    labels: list[str] = field(default_factory=list)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    task: BuildTask = field(default_factory=lambda: build_task(Task()))


def _run_teacher(teacher: torch.nn.Module, val_x: torch.Tensor, spec: str,
                 task: BuildTask) -> Any:
    try:
        outputs = predict(teacher, val_x)
    except Exception as exc:
        raise UserCodeError(f"model {spec} cannot run the data's inputs of shape "
                            f"{list(val_x.shape[1:])}: {type(exc).__name__}: "
                            f"{first_line(exc, 200)}") from exc
    task.check_outputs(outputs, spec)
    return outputs


def prepare_inputs(teacher: torch.nn.Module, user: UserData, recipe: Recipe, model_spec: str,
                   weights: Path | None) -> BuildInputs:
    """Collect the validation and calibration sets, run the teacher, score the baseline."""
    val_x, val_y = collect(progress.track(user.validation, "reading validation set",
                                          total=batches_in(user.validation)))
    calib, _ = collect(progress.track(user.calibration, "reading calibration set",
                                      total=batches_in(user.calibration)),
                       limit=recipe.quantize.calibration_samples)
    task = build_task(user.task or Task())
    outputs = _run_teacher(teacher, val_x, model_spec, task)
    metric = user.metric or task.default_metric()
    baseline = score(metric, outputs, val_y)
    if not math.isfinite(baseline):
        raise UserCodeError(f"the metric gives {baseline} for the original model on the "
                            "validation set; it must return a finite number")
    source = {"source_model": model_spec, "source_weights": str(weights) if weights else None,
              "source_weights_sha256": file_sha256(weights) if weights
              else state_dict_sha256(teacher), "data": user.spec}
    data = EvalData(example=val_x[:1].clone(), calibration=calib, val_x=val_x, val_y=val_y,
                    reference=to_numpy(outputs), metric=metric)
    return BuildInputs(teacher=teacher, data=data, train=user.train, baseline_metric=baseline,
                       metric_name=getattr(metric, "__name__", type(metric).__name__),
                       calibration_sha256=tensors_sha256(calib), source=source,
                       labels=_labels(user, task), preprocessing=_preprocessing(user), task=task)


def _labels(user: UserData, task: BuildTask) -> list[str]:
    """The class names: the data module's ``labels``, else a detector's own."""
    if user.labels or task.spec.detection is None:
        return list(user.labels)
    return list(task.spec.detection.labels)


def _preprocessing(user: UserData) -> Preprocessing:
    """The data function's ``preprocessing``, checked now rather than after the search."""
    try:
        return Preprocessing.from_dict(user.preprocessing, "preprocessing")
    except EdgekitError as exc:
        raise UserCodeError(f"data function {user.spec}: {exc} (see Preprocessing in "
                            "edge_agent/contracts/build_info.py)") from exc
