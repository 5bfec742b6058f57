"""examples/digits/attention.py: the ViT builds, maps 3x64x64 digits to ten logits, and its
encoder is torch's own ``nn.TransformerEncoder`` (what users of attention models export)."""

from __future__ import annotations

import torch
from torch import nn

from examples.digits.attention import SIZE, data_64, vit_small


def test_vit_maps_its_input_to_ten_logits_through_a_transformer_encoder() -> None:
    model = vit_small().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, SIZE, SIZE))
    assert out.shape == (2, 10)
    layers = model.encoder.layers
    assert isinstance(model.encoder, nn.TransformerEncoder) and len(layers) == 10
    assert layers[0].self_attn.num_heads == 4 and layers[0].linear1.out_features == 512


def test_data_is_the_digits_at_64_pixels() -> None:
    x, y = next(iter(data_64()["validation"]))
    assert x.shape == (32, 3, SIZE, SIZE) and y.shape == (32,)
