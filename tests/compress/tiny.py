"""Tiny real models and data for the build pipeline's tests (seconds, no downloads).

Also usable as user code: ``--model tests/compress/tiny.py:tiny_model``,
``--data tests/compress/tiny.py:tiny_data``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

CLASSES, SIZE = 4, 16


class TinyNet(nn.Module):
    """Stem conv, a depthwise-separable residual block, a strided conv, pool, classifier."""

    def __init__(self, width: int = 16, classes: int = CLASSES) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
                                nn.BatchNorm2d(width), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width))
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                                  nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        y = torch.relu(y + self.pw(self.dw(y)))
        return self.fc(self.head(self.down(y)))


def tiny_tensors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class is the quadrant holding a bright blob (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    x = torch.randn(n, 1, SIZE, SIZE, generator=g) * 0.3
    half = SIZE // 2
    for i, c in enumerate(labels.tolist()):
        r, col = (c // 2) * half, (c % 2) * half
        x[i, 0, r + 2:r + half - 2, col + 2:col + half - 2] += 2.0
    return x, labels


def fit_tiny_tensors(model: nn.Module, seed: int, steps: int, lr: float) -> nn.Module:
    """Train ``model`` in place with Adam on 256 ``tiny_tensors`` (batches of 32); eval mode."""
    x, y = tiny_tensors(256, seed=seed + 100)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for i in range(steps):
        batch = slice((i * 32) % 256, (i * 32) % 256 + 32)
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def trained_tiny_model(seed: int = 0, steps: int = 120) -> TinyNet:
    """A TinyNet trained for a few steps (near-perfect on tiny_tensors)."""
    torch.manual_seed(seed)
    return fit_tiny_tensors(TinyNet(), seed, steps, lr=0.01)


def tiny_model() -> nn.Module:
    """Factory for the CLI: a trained TinyNet."""
    return trained_tiny_model()


def tiny_data() -> dict[str, Any]:
    """Data function for the CLI: small train / calibration / validation loaders."""
    parts = {"train": tiny_tensors(128, 1), "calibration": tiny_tensors(32, 2),
             "validation": tiny_tensors(64, 3)}
    return {name: DataLoader(TensorDataset(*t), batch_size=32, shuffle=name == "train")
            for name, t in parts.items()} | {"labels": ["tl", "tr", "bl", "br"]}


def strict_data() -> dict[str, Any]:
    """Data whose metric punishes any change in the outputs: nothing but fp32 r0 passes 0.

    The metric compares with the original's outputs on the whole validation set, so the
    same set is also the ``test`` (gate) loader: the build then never splits it.
    """
    model = trained_tiny_model()
    doc = tiny_data()
    doc["test"] = DataLoader(doc["validation"].dataset, batch_size=32)

    def closeness(outputs: torch.Tensor, labels: torch.Tensor) -> float:
        with torch.no_grad():
            reference = model(val_x)
        return -float((outputs - reference).abs().max())

    val_x = doc["validation"].dataset.tensors[0]
    return doc | {"metric": closeness}


def broken_factory() -> nn.Module:
    """A factory that fails."""
    raise ValueError("no such checkpoint format")


def not_a_module() -> object:
    """A factory that returns the wrong thing."""
    return {"weights": 1}


def wrong_shape_data() -> dict[str, Any]:
    """A data function returning loaders of bare tensors instead of (inputs, labels)."""
    x, _ = tiny_tensors(16, 0)
    return {"train": DataLoader(x), "calibration": DataLoader(x), "validation": DataLoader(x)}


def list_data() -> list:
    """A data function returning a list."""
    return [1, 2, 3]


class BucketNet(TinyNet):
    """TinyNet plus ``torch.bucketize``, which ONNX can express and TFLite cannot."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("edges", torch.tensor([-1.0, 0.0, 1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = torch.bucketize(x, self.edges).to(x.dtype) * 0.1
        return super().forward(x + levels)


def bucket_model() -> nn.Module:
    """Factory: a trained BucketNet (the TinyNet weights; the buckets shift inputs slightly)."""
    model = BucketNet()
    model.load_state_dict(trained_tiny_model().state_dict(), strict=False)
    return model.eval()


def raising_metric_data() -> dict[str, Any]:
    """Data whose metric raises (a user bug): the build must say so in one line."""
    def metric(outputs: torch.Tensor, labels: torch.Tensor) -> float:
        raise KeyError("labels_map")

    return tiny_data() | {"metric": metric}


def nan_metric_data() -> dict[str, Any]:
    """Data whose metric is NaN: nothing may ever ship on it."""
    return tiny_data() | {"metric": lambda outputs, labels: float("nan")}


def tiny_data_with_test() -> dict[str, Any]:
    """tiny_data plus a separate ``test`` loader: the honest gate's data."""
    test = DataLoader(TensorDataset(*tiny_tensors(48, 4)), batch_size=32)
    return tiny_data() | {"test": test}
