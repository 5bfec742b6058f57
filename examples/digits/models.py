"""Two digit classifiers defined in the project: a small CNN and a MobileNetV2-style network.

Both take ``float32[N, 1, 32, 32]`` (digits upsampled from 8x8, see ``data.py``)
and return logits ``[N, 10]``. The MobileNetV2-style net has inverted residual
blocks with depthwise convolutions, so structured pruning has to respect its
coupled channels (residual adds, depthwise groups).
"""

from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 10

# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper,
# shortened for 32x32 inputs.
MOBILENET_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 1), (6, 96, 2, 2))


def _divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` (never below 90% of the value)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1,
                 groups: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU6."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class SmallCNN(nn.Module):
    """Three conv blocks and a linear classifier: quick to train, quick to build."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(1, width, stride=2),          # 16x16
            conv_bn_relu(width, width * 2, stride=2),  # 8x8
            conv_bn_relu(width * 2, width * 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(width * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> project (1x1, linear); residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [conv_bn_relu(cin, hidden, kernel=1)] if expand != 1 else []
        layers += [conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2-style network for 32x32 inputs, with a width multiplier.

    ``stages``, ``in_channels`` and ``stem_stride`` fit it to other inputs (the full
    MobileNetV2 stages on 3x128x128 images: ``examples/digits/large.py``).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, width: float = 1.0,
                 last_channels: int = 512, dropout: float = 0.1,
                 stages: tuple[tuple[int, int, int, int], ...] = MOBILENET_STAGES,
                 in_channels: int = 1, stem_stride: int = 1) -> None:
        super().__init__()
        cin = _divisible(32 * width)
        layers: list[nn.Module] = [conv_bn_relu(in_channels, cin, stride=stem_stride)]
        for t, c, n, s in stages:
            cout = _divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        last = _divisible(last_channels * max(1.0, width))
        layers += [conv_bn_relu(cin, last, kernel=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def small_cnn() -> nn.Module:
    """Factory for ``edgekit build --model examples/digits/models.py:small_cnn``."""
    return SmallCNN()


def mobilenetv2() -> nn.Module:
    """Factory for ``edgekit build --model examples/digits/models.py:mobilenetv2``."""
    return MobileNetV2()


ARCHITECTURES = {"small_cnn": small_cnn, "mobilenetv2": mobilenetv2}
