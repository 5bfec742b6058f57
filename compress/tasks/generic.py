"""``generic``: any numeric outputs (regression, embeddings, anomaly scores, several outputs).

- metric: the data module's own, or negative mean squared error between the outputs
  (flattened and joined per sample) and the labels;
- distillation: mean squared error to each of the teacher's outputs, each scaled by the
  teacher output's variance so a large-valued output does not drown a small one, mixed
  with the labels' squared error by ``1 - alpha`` when the labels fit;
- parity: the largest absolute difference per output;
- reference statistics (a value histogram per output) are made by ``export.refstats``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from compress.errors import UserCodeError
from compress.evaluation import Metric
from compress.outputs import as_list
from compress.recipe import DistillConfig
from compress.tasks.base import TASKS, BuildTask


def joined(outputs: Any) -> torch.Tensor:
    """All outputs of each sample flattened and joined: [batch, values]."""
    parts = [torch.as_tensor(o).float() for o in as_list(outputs)]
    return torch.cat([p.reshape(len(p), -1) for p in parts], dim=1)


def negative_mse(outputs: Any, labels: torch.Tensor) -> float:
    """-mean((outputs - labels)^2), outputs joined per sample (higher is better)."""
    values, target = joined(outputs), labels.float().reshape(len(labels), -1)
    if values.shape != target.shape:
        raise UserCodeError(f"the outputs give {values.shape[1]} values per sample but the labels "
                            f"{target.shape[1]}; give labels of the outputs' shape (joined) or a "
                            "\"metric\" in the data module")
    return -float(F.mse_loss(values, target))


@TASKS.register("generic")
class Generic(BuildTask):
    kind = "generic"
    metric_name = "negative_mse"
    metric_unit = "value"

    def default_metric(self) -> Metric:
        return negative_mse

    def check_outputs(self, outputs: Any, model: str) -> None:
        names = self.spec.output_names
        if names and len(names) != len(as_list(outputs)):
            raise UserCodeError(f"task output_names names {len(names)} outputs but model {model} "
                                f"returns {len(as_list(outputs))}")
        for o in as_list(outputs):
            if not torch.is_tensor(o) or not o.is_floating_point():
                raise UserCodeError(f"model {model} returns a non-float output; generic models "
                                    "give float tensors [batch, ...]")

    def distill_loss(self, student: Any, teacher: Any, labels: torch.Tensor,
                     cfg: DistillConfig) -> torch.Tensor:
        soft = sum(F.mse_loss(s, t.detach()) / t.detach().var().clamp(min=1e-6)
                   for s, t in zip(as_list(student), as_list(teacher), strict=True))
        values = joined(student)
        target = labels.float().reshape(len(labels), -1)
        if cfg.alpha >= 1.0 or values.shape != target.shape:
            return soft
        hard = F.mse_loss(values, target) / target.var().clamp(min=1e-6)
        return cfg.alpha * soft + (1 - cfg.alpha) * hard

    def parity(self, outputs: Any, reference: Any, precision: str) -> dict[str, Any]:
        diffs = [float(np.max(np.abs(np.asarray(o, np.float64) - np.asarray(r, np.float64))))
                 if np.shape(o) == np.shape(r) and np.size(o) else float("inf")
                 for o, r in zip(as_list(outputs), as_list(reference), strict=False)]
        return {"max_abs_diff": round(max(diffs), 6),
                "per_output_max_abs_diff": [round(d, 6) for d in diffs]}
