"""An attention model on digits: a small ViT-style classifier (``nn.TransformerEncoder``).

For the benchmarks of int8 recovery and of attention models (``benchmarks/``): the
digits of ``large.py`` at 3x64x64, cut into 8x8 patches (64 tokens), a class token,
learnt positions, ten pre-norm encoder layers (width 256, 4 heads, GELU feed-forward
of 512) and a linear head: 5.3M parameters, 6.7 ms in fp32 at one thread in ONNX Runtime
on the 2-core benchmark host, like the keyword-spotting and small vision transformers
that run on Pis. An 8x8 patch of the 64x64 image is one pixel of the 8x8 original::

    edgekit build --model examples/digits/attention.py:vit_small \\
                  --data examples/digits/attention.py:data_64 ...
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from examples.digits.large import CHANNELS, large_data
from examples.digits.models import NUM_CLASSES

SIZE, PATCH = 64, 8


class ViT(nn.Module):
    """Patch embedding (a strided conv), class token, positions, encoder, head."""

    def __init__(self, size: int = SIZE, patch: int = PATCH, width: int = 256, depth: int = 10,
                 heads: int = 4, mlp: int = 512, classes: int = NUM_CLASSES,
                 in_channels: int = CHANNELS) -> None:
        super().__init__()
        tokens = (size // patch) ** 2
        self.embed = nn.Conv2d(in_channels, width, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, mlp, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        y = self.encoder(tokens + self.pos)
        return self.head(self.norm(y[:, 0]))


def vit_small() -> nn.Module:
    """The benchmarked ViT: 3x64x64 input, 10 layers of width 256."""
    return ViT()


def data_64() -> dict[str, Any]:
    """``--data`` for 3x64x64 digits."""
    return large_data(SIZE)
