"""A tiny transformer classifier for the build tests: the 16 rows of a ``tiny_tensors``
image as 16 tokens, two pre-norm ``nn.TransformerEncoderLayer``s (width 32, 4 heads,
feed-forward 64), a linear head. ``tiny_transformer`` is a CLI factory (``--model
tests/compress/tiny_attention.py:tiny_transformer``); the data is ``tiny.py``'s."""

from __future__ import annotations

import torch
from torch import nn

from tests.compress.tiny import fit_tiny_tensors

SIDE, WIDTH = 16, 32


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(SIDE, WIDTH)
        self.pos = nn.Parameter(torch.randn(1, SIDE, WIDTH) * 0.1)
        layer = nn.TransformerEncoderLayer(WIDTH, 4, 64, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.reshape(x.shape[0], SIDE, SIDE)) + self.pos
        return self.head(self.encoder(tokens).mean(1))


def tiny_transformer() -> nn.Module:
    """Factory for the CLI: a trained TinyTransformer."""
    torch.manual_seed(0)
    return fit_tiny_tensors(TinyTransformer(), 0, 160, lr=0.003)
