"""The memory format distillation trains in: measured per model, channels-last only where it
runs and is faster, the models given are never changed by the probe."""

from __future__ import annotations

import torch
from torch import nn

from compress.memory_format import CHANNELS_LAST, CONTIGUOUS, as_format, choose_format


def _convnet() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, 4))


class ViewsItsFeatures(nn.Module):
    """A model whose code views a feature map: fails on a channels-last tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fc(y.view(y.size(0), -1))


def test_a_convnet_is_timed_in_both_formats_and_left_as_it_was():
    student, teacher = _convnet(), _convnet()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    choice = choose_format(student, teacher, torch.randn(8, 3, 16, 16))
    assert choice.name in (CONTIGUOUS, CHANNELS_LAST)
    assert set(choice.seconds) == {CONTIGUOUS, CHANNELS_LAST}
    assert all(s > 0 for s in choice.seconds.values())
    assert (choice.name == CHANNELS_LAST) == (choice.seconds[CHANNELS_LAST]
                                              < choice.seconds[CONTIGUOUS])
    after = student.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats too
    assert all(p.is_contiguous() and p.grad is None for p in student.parameters())
    assert choice.summary()["memory_format"] == choice.name


def test_a_model_that_cannot_run_channels_last_keeps_the_default():
    model = ViewsItsFeatures()
    choice = choose_format(model, ViewsItsFeatures(), torch.randn(4, 3, 8, 8))
    assert choice.name == CONTIGUOUS and "does not run" in choice.reason


def test_models_without_2d_convolutions_are_not_probed():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    choice = choose_format(mlp, mlp, torch.randn(4, 1, 4, 4))
    assert choice.name == CONTIGUOUS and choice.seconds == {}


def test_as_format_changes_4d_tensors_only():
    x = torch.randn(2, 3, 4, 4)
    assert as_format(x, torch.channels_last).is_contiguous(memory_format=torch.channels_last)
    flat = torch.randn(2, 3)
    assert as_format(flat, torch.channels_last) is flat
