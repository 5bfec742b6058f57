"""Digits at realistic sizes: 3x128x128 and 3x288x288 inputs, ResNet-18 and MobileNetV2-1.0.

For ``benchmarks/build_large.py``: the same images, splits and seed as ``data.py``
(its 32x32 splits, upsampled again and repeated over three channels), and two
networks whose fp32 run takes milliseconds, not tenths, so runtime overhead does not
flatter speed-up ratios::

    edgekit build --model examples/digits/large.py:mobilenetv2_large \\
                  --data examples/digits/large.py:data_288 ...
    edgekit build --model examples/digits/large.py:resnet18_large \\
                  --data examples/digits/large.py:data_128 ...

MobileNetV2-1.0 takes 288x288: at its ImageNet size (224x224) its fp32 run in LiteRT
is 3.2-4.0 ms on the AVX-512 benchmark host, at 288x288 about 5.5 ms. Images are
upsampled when a batch is read, so the splits take the memory of their 32x32 tensors,
not of the large copies.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from examples.digits.data import LABELS, PREPROCESSING, splits
from examples.digits.models import NUM_CLASSES, MobileNetV2

CHANNELS = 3


def preprocessing(size: int) -> dict[str, Any]:
    """The manifest's preprocessing: ``data.py``'s steps, then resize and repeat channels."""
    return {**PREPROCESSING, "steps": [
        *PREPROCESSING["steps"],
        {"op": "resize", "size": [size, size], "mode": "bilinear", "align_corners": False},
        {"op": "repeat_channels", "channels": CHANNELS}]}


def upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised 32x32 digits ``[N, 1, 32, 32]`` -> ``[N, 3, size, size]``."""
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(-1, CHANNELS, -1, -1).contiguous()


class UpsampledDigits(Dataset):
    """One split of ``data.splits``, upsampled image by image as it is read."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, size: int) -> None:
        self.images, self.labels, self.size = images, labels, size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return upsample(self.images[index:index + 1], self.size)[0], self.labels[index]


def large_loaders(size: int, batch_size: int = 32, seed: int = 0) -> dict[str, DataLoader]:
    """Train (shuffled, seeded), calibration and validation loaders of 3 x size x size digits."""
    if size < 32:
        raise ValueError(f"image size {size} is below the 32x32 source; give 32 or more")
    generator = torch.Generator().manual_seed(seed)
    return {name: DataLoader(UpsampledDigits(*part, size), batch_size=batch_size,
                             shuffle=name == "train",
                             generator=generator if name == "train" else None)
            for name, part in splits(seed).items()}


def large_data(size: int) -> dict[str, Any]:
    """A ``--data`` function's result: loaders, labels and preprocessing for the manifest."""
    return {**large_loaders(size), "labels": LABELS, "preprocessing": preprocessing(size)}


def data_128() -> dict[str, Any]:
    """``--data`` for 3x128x128 digits (the ResNet-18-style net)."""
    return large_data(128)


def data_224() -> dict[str, Any]:
    """``--data`` for 3x224x224 digits (MobileNetV2-1.0 at its ImageNet size)."""
    return large_data(224)


def data_288() -> dict[str, Any]:
    """``--data`` for 3x288x288 digits (MobileNetV2-1.0 as benchmarked: fp32 >= 5 ms)."""
    return large_data(288)

# MobileNetV2 as published (expansion t, channels c, repeats n, first stride s).
MOBILENETV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                      (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
RESNET18_BLOCKS = (2, 2, 2, 2)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (a strided 1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with BasicBlocks (ResNet-18 at ``blocks=(2, 2, 2, 2)``, ``width=64``)."""

    def __init__(self, blocks: tuple[int, ...] = RESNET18_BLOCKS, width: int = 64,
                 num_classes: int = NUM_CLASSES, in_channels: int = CHANNELS) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        cin = width
        for stage, repeats in enumerate(blocks):
            cout = width * 2 ** stage
            for i in range(repeats):
                layers.append(BasicBlock(cin, cout, 2 if stage and not i else 1))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def mobilenetv2_large() -> nn.Module:
    """MobileNetV2-1.0 (published stages, 1280 last channels) with a stride-2 RGB stem."""
    return MobileNetV2(width=1.0, last_channels=1280, stages=MOBILENETV2_STAGES,
                       in_channels=CHANNELS, stem_stride=2)


def resnet18_large() -> nn.Module:
    """ResNet-18-style net: BasicBlocks [2, 2, 2, 2], widths 64..512."""
    return ResNet()


# Each architecture with the input size it is benchmarked at.
LARGE_ARCHITECTURES = {"mobilenetv2_large": (mobilenetv2_large, 288),
                       "resnet18_large": (resnet18_large, 128)}
