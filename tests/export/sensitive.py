"""A small real model with ONE layer that int8 destroys, for the sensitivity tests.

An MLP on ``tests.compress.tiny`` images (fc1 -> ReLU -> fc2 -> ReLU -> fc3 -> ReLU ->
fc4), trained for a few steps. Then one output channel of ``fc2`` is scaled up by
``OUTLIER`` and the matching input column of ``fc3`` scaled down by the same factor: the
float model computes exactly the same (ReLU is positively homogeneous), but the
activations between fc2 and fc3 now span a range ``OUTLIER`` times wider than the
signal, so per-tensor int8 rounds every other channel to zero and the model guesses.
The rest of the network quantizes cleanly.

Also usable as user code: ``--model tests/export/sensitive.py:sensitive_model``,
``--data tests/compress/tiny.py:tiny_data``.
"""

from __future__ import annotations

import torch
from torch import nn

from tests.compress.tiny import CLASSES, SIZE, fit_tiny_tensors, tiny_tensors

OUTLIER = 4000.0
SENSITIVE = "fc2"  # the layer whose output carries the outlier channel


class OutlierMLP(nn.Module):
    """Four linear layers; ``fc2`` gets the outlier channel after training."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(SIZE * SIZE, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, width)
        self.fc4 = nn.Linear(width, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.fc1(torch.flatten(x, 1)))
        y = torch.relu(self.fc2(y))
        y = torch.relu(self.fc3(y))
        return self.fc4(y)


def add_outlier(model: OutlierMLP, factor: float = OUTLIER) -> OutlierMLP:
    """Scale the most active channel of fc2 by ``factor`` and fc3's input from it by
    ``1 / factor``: the same function in float, an outlier range for int8."""
    with torch.no_grad():
        x, _ = tiny_tensors(64, seed=7)
        active = torch.relu(model.fc2(torch.relu(model.fc1(torch.flatten(x, 1)))))
        channel = int(active.mean(0).argmax())
        model.fc2.weight[channel] *= factor
        model.fc2.bias[channel] *= factor
        model.fc3.weight[:, channel] /= factor
    return model


def trained_outlier_model(seed: int = 0, steps: int = 150) -> OutlierMLP:
    """The MLP trained for a few steps (near-perfect on tiny_tensors), then the outlier."""
    torch.manual_seed(seed)
    return add_outlier(fit_tiny_tensors(OutlierMLP(), seed, steps, lr=0.005))


def sensitive_model() -> nn.Module:
    """Factory for the CLI: the trained MLP with its outlier layer."""
    return trained_outlier_model()
