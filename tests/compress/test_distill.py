"""Knowledge distillation: the loss, the schedules, early stopping, keeping the best epoch."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from compress.distill import SCHEDULES, distill, distillation_loss
from compress.evaluation import top1_accuracy
from compress.prune import prune
from compress.recipe import DistillConfig, PruneConfig
from tests.compress.tiny import tiny_tensors


def test_loss_is_the_weighted_sum_of_soft_and_hard():
    s, t, y = torch.randn(8, 4), torch.randn(8, 4), torch.randint(0, 4, (8,))
    hard = distillation_loss(s, t, y, DistillConfig(alpha=0.0))
    assert torch.isclose(hard, F.cross_entropy(s, y))
    soft = distillation_loss(s, t, y, DistillConfig(alpha=1.0, temperature=2.0))
    expected = F.kl_div(F.log_softmax(s / 2, 1), F.softmax(t / 2, 1), reduction="batchmean") * 4
    assert torch.isclose(soft, expected)
    assert distillation_loss(t, t, y, DistillConfig(alpha=1.0)) < 1e-6


@pytest.mark.parametrize("name", SCHEDULES.keys())
def test_schedules_start_at_full_rate_and_never_grow(name):
    factor = SCHEDULES.get(name)
    values = [factor(step, 100) for step in range(101)]
    assert values[0] == 1.0 and all(0 <= v <= 1 for v in values)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(values))
    assert not math.isnan(values[-1])


def _loader():
    return DataLoader(TensorDataset(*tiny_tensors(128, 1)), batch_size=32, shuffle=True)


def test_distillation_recovers_a_pruned_student(tiny_teacher, tiny_validation):
    torch.manual_seed(0)  # the loader's shuffle: not whatever the tests before left
    # 0.6 drops the student to about half right; 0.7 left too little for 4 epochs to
    # recover reliably (0.73-0.93 by seed and thread count)
    student = prune(tiny_teacher, torch.randn(1, 1, 16, 16), PruneConfig(round_to=None),
                    0.6).model
    cfg = DistillConfig(epochs=4, patience=4, lr=0.01)
    result = distill(student, tiny_teacher, _loader(), tiny_validation, top1_accuracy, cfg)
    assert result.best_metric >= 0.9
    assert result.history[0]["epoch"] == 0 and len(result.history) == result.epochs_run + 1
    x, y = tiny_validation
    assert top1_accuracy(student(x), y) == pytest.approx(result.best_metric)


def test_early_stop_when_the_metric_does_not_improve(tiny_teacher, tiny_validation):
    student = prune(tiny_teacher, torch.randn(1, 1, 16, 16), PruneConfig(round_to=None),
                    0.3).model
    cfg = DistillConfig(epochs=10, patience=2, lr=1e-9)  # nothing can improve
    result = distill(student, tiny_teacher, _loader(), tiny_validation,
                     lambda o, y: 0.5, cfg)
    assert result.stopped_early and result.epochs_run == 2 and result.best_epoch == 0


def _half_pruned(teacher):
    return prune(teacher, torch.randn(1, 1, 16, 16), PruneConfig(round_to=None), 0.5).model


def test_the_time_budget_stops_before_an_epoch_that_would_not_fit(tiny_teacher,
                                                                  tiny_validation):
    student = _half_pruned(tiny_teacher)
    cfg = DistillConfig(epochs=10, patience=10)
    result = distill(student, tiny_teacher, _loader(), tiny_validation, top1_accuracy, cfg,
                     time_left=lambda: 0.0)
    assert result.epochs_run == 1 and result.stopped_early  # the first epoch always runs
    assert result.stopped_by == "time budget"
    assert result.summary()["stopped_by"] == "time budget"
    assert result.history[1]["seconds"] >= 0


def test_without_a_budget_every_epoch_runs_and_the_student_ends_contiguous(tiny_teacher,
                                                                           tiny_validation):
    student = _half_pruned(tiny_teacher)
    cfg = DistillConfig(epochs=3, patience=10)
    result = distill(student, tiny_teacher, _loader(), tiny_validation, top1_accuracy, cfg,
                     time_left=lambda: 1e9)
    assert result.epochs_run == 3 and not result.stopped_early and result.stopped_by == ""
    assert result.memory_format["memory_format"] in ("contiguous", "channels_last")
    for model in (student, tiny_teacher):
        assert all(p.is_contiguous() for p in model.parameters())
