"""Knowledge distillation: the original model (teacher) trains the pruned one (student).

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
     + (1 - alpha) * cross_entropy(student, labels)

The learning rate follows a registered schedule; after each epoch the student is
scored on the validation set and training stops early when the metric has not
improved for ``patience`` epochs, or when the next epoch would not fit in the time the
build's budget leaves (``time_left``; the first epoch always runs). The best epoch's
weights are kept. Training runs in the memory format measured faster for the model
(``compress.memory_format``); the student ends in the default format.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from compress import progress
from compress.errors import CompressError
from compress.evaluation import Metric, batches_in, predict, score
from compress.labels import batch_labels
from compress.memory_format import as_format, choose_format
from compress.recipe import DistillConfig
from compress.registry import Registry

# A schedule maps (step, total_steps) to a learning-rate factor.
SCHEDULES: Registry[Callable[[int, int], float]] = Registry("learning-rate schedule",
                                                            CompressError)
SCHEDULES.register("constant")(lambda step, total: 1.0)
SCHEDULES.register("cosine")(lambda step, total: 0.5 * (1 + math.cos(math.pi * step / total)))
SCHEDULES.register("step")(lambda step, total: 0.1 ** (3 * step // max(1, total)))
SCHEDULES.register("linear")(lambda step, total: 1.0 - step / max(1, total))


@dataclass
class DistillResult:
    """How distillation went: per-epoch figures, the best epoch, whether it stopped early
    and why (``"patience"`` or ``"time budget"``), and the memory format it trained in."""

    best_metric: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str = ""
    memory_format: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None

    def summary(self) -> dict[str, Any]:
        """Plain JSON figures for the report."""
        return {"best_metric": round(self.best_metric, 5), "best_epoch": self.best_epoch,
                "lr": self.lr,
                "epochs_run": self.epochs_run, "stopped_early": self.stopped_early,
                "stopped_by": self.stopped_by, "memory_format": self.memory_format,
                "history": self.history}


Loss = Callable[[Any, Any, torch.Tensor, DistillConfig], torch.Tensor]
"""(student outputs, teacher outputs, labels, config) -> loss: the task's
(``compress.tasks``); classifiers by default."""


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, cfg: DistillConfig) -> torch.Tensor:
    """The weighted sum of the soft (teacher) and hard (label) losses of a classifier."""
    t = cfg.temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.softmax(teacher_logits / t, dim=1),
                    reduction="batchmean") * (t * t)
    hard = F.cross_entropy(student_logits, labels.long())
    return cfg.alpha * soft + (1 - cfg.alpha) * hard


def _optimizer(model: torch.nn.Module, cfg: DistillConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9,
                               weight_decay=cfg.weight_decay, nesterov=True)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _train_epoch(student: torch.nn.Module, teacher: torch.nn.Module, loader: Any,
                 optimizer: torch.optim.Optimizer, scheduler: Any, cfg: DistillConfig,
                 label: str, memory_format: torch.memory_format, loss_fn: Loss) -> float:
    student.train()
    total, batches = 0.0, 0
    for inputs, labels in progress.track(loader, label, total=batches_in(loader)):
        inputs = as_format(inputs.float(), memory_format)
        with torch.no_grad():
            teacher_logits = teacher(inputs)
        loss = loss_fn(student(inputs), teacher_logits, batch_labels(labels), cfg)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item()
        batches += 1
    return total / max(1, batches)


def distill(student: torch.nn.Module, teacher: torch.nn.Module, train: Any,
            validation: tuple[torch.Tensor, torch.Tensor], metric: Metric, cfg: DistillConfig,
            label: str = "distilling", time_left: Callable[[], float] | None = None,
            loss: Loss | None = None) -> DistillResult:
    """Train ``student`` in place from ``teacher``; it ends with its best epoch's weights.

    ``time_left`` (seconds the build's budget leaves this student) stops training before
    an epoch that would not fit, judged by the last epoch's duration. ``loss`` is the
    task's distillation loss (a classifier's KL + cross-entropy by default). A student with
    attention blocks trains at ``ATTENTION_LR_SCALE`` of the default rate unless the recipe
    sets one (``rate_for``).
    """
    cfg = rate_for(student, cfg)
    teacher.eval()
    fmt = choose_format(student, teacher, next(iter(train))[0])
    student.to(memory_format=fmt.memory_format)
    teacher.to(memory_format=fmt.memory_format)
    try:
        result = _epochs(student, teacher, train, validation, metric, cfg, label,
                         fmt.memory_format, time_left, loss or distillation_loss)
    finally:
        student.to(memory_format=torch.contiguous_format)
        teacher.to(memory_format=torch.contiguous_format)
    result.memory_format, result.lr = fmt.summary(), cfg.lr
    student.eval()
    return result


ATTENTION_LR_SCALE = 0.1
"""Transformers fine-tune at about a tenth of a convolutional net's rate (AdamW 3e-4, not
3e-3): at the default rate, with no warm-up, every epoch left a head-pruned ViT worse than
before it (0.924 at epoch 0, lower after each), so distillation never recovered it."""


def rate_for(student: torch.nn.Module, cfg: DistillConfig) -> DistillConfig:
    """``cfg`` with the learning rate for ``student``: the recipe's when it sets one, else
    the default, scaled by ``ATTENTION_LR_SCALE`` for a model with attention blocks."""
    from compress.attention import blocks

    if "lr" in cfg.model_fields_set or not blocks(student):
        return cfg
    return cfg.model_copy(update={"lr": cfg.lr * ATTENTION_LR_SCALE})


def _epochs(student: torch.nn.Module, teacher: torch.nn.Module, train: Any,
            validation: tuple[torch.Tensor, torch.Tensor], metric: Metric, cfg: DistillConfig,
            label: str, memory_format: torch.memory_format,
            time_left: Callable[[], float] | None, loss_fn: Loss) -> DistillResult:
    optimizer = _optimizer(student, cfg)
    factor = SCHEDULES.get(cfg.schedule)
    total = cfg.epochs * max(1, batches_in(train) or sum(1 for _ in train))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: factor(min(s, total), total))
    val_x, val_y = validation
    best = score(metric, predict(student, val_x), val_y)
    best_state, best_epoch, stale, stopped_by = copy.deepcopy(student.state_dict()), 0, 0, ""
    history: list[dict[str, Any]] = [{"epoch": 0, "loss": None, "metric": round(best, 5)}]
    for epoch in range(1, cfg.epochs + 1):
        started = time.monotonic()
        loss = _train_epoch(student, teacher, train, optimizer, scheduler, cfg,
                            f"{label} epoch {epoch}/{cfg.epochs}", memory_format, loss_fn)
        value = score(metric, predict(student, val_x), val_y)
        seconds = time.monotonic() - started
        history.append({"epoch": epoch, "loss": round(loss, 5), "metric": round(value, 5),
                        "seconds": round(seconds, 2)})
        if value > best + cfg.min_delta:
            best, best_state, best_epoch, stale = value, copy.deepcopy(student.state_dict()), \
                epoch, 0
        else:
            stale += 1
        if stale >= cfg.patience:
            stopped_by = "patience"
        elif epoch < cfg.epochs and time_left is not None and time_left() < seconds:
            stopped_by = "time budget"
        if stopped_by:
            break
    student.load_state_dict(best_state)
    return DistillResult(best, best_epoch, len(history) - 1, len(history) - 1 < cfg.epochs,
                         history, stopped_by)
