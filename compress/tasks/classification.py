"""``classification``: one output of class scores ``[batch, classes]`` (edgekit's first task,
unchanged for its users): top-1 accuracy, KL + cross-entropy distillation, top-1 parity,
class distribution and confidence references."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from compress.errors import UserCodeError
from compress.evaluation import Metric, top1_accuracy
from compress.outputs import count
from compress.recipe import DistillConfig
from compress.tasks.base import TASKS, BuildTask


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            cfg: DistillConfig) -> torch.Tensor:
    """alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha) * cross_entropy(labels)."""
    t = cfg.temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.softmax(teacher_logits / t, dim=1),
                    reduction="batchmean") * (t * t)
    hard = F.cross_entropy(student_logits, labels.long())
    return cfg.alpha * soft + (1 - cfg.alpha) * hard


@TASKS.register("classification")
class Classification(BuildTask):
    kind = "classification"
    metric_name = "top1_accuracy"

    def default_metric(self) -> Metric:
        return top1_accuracy

    def check_outputs(self, outputs: Any, model: str) -> None:
        if count(outputs) != 1 or outputs.ndim != 2:
            shapes = [list(o.shape) for o in (outputs if count(outputs) > 1 else [outputs])]
            raise UserCodeError(f"model {model} returns {shapes[0] if len(shapes) == 1 else shapes}"
                                "; a classifier gives one output of class scores [batch, "
                                "classes]. For a detector or a model with other outputs, set "
                                "the data module's \"task\" to detection or generic")

    def distill_loss(self, student: Any, teacher: Any, labels: torch.Tensor,
                     cfg: DistillConfig) -> torch.Tensor:
        return kd_loss(student, teacher, labels, cfg)

    def parity(self, outputs: Any, reference: Any, precision: str) -> dict[str, Any]:
        from export.parity import parity

        return parity(outputs, reference)
