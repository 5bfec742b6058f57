"""examples/digits/large.py: the realistic-size models and data construct with the right shapes."""

from __future__ import annotations

import pytest
import torch

from examples.digits.data import splits
from examples.digits.large import LARGE_ARCHITECTURES, data_128, large_loaders, upsample
from examples.digits.models import MobileNetV2


@pytest.mark.parametrize("name", sorted(LARGE_ARCHITECTURES))
def test_model_maps_its_input_size_to_ten_logits(name: str) -> None:
    factory, size = LARGE_ARCHITECTURES[name]
    with torch.no_grad():
        out = factory().eval()(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)


def test_mobilenetv2_large_is_the_published_network() -> None:
    factory, _ = LARGE_ARCHITECTURES["mobilenetv2_large"]
    params = sum(p.numel() for p in factory().parameters())
    assert 2.2e6 < params < 2.3e6  # MobileNetV2-1.0 with a 10-class head


def test_mobilenetv2_defaults_are_unchanged() -> None:
    with torch.no_grad():
        out = MobileNetV2().eval()(torch.randn(1, 1, 32, 32))
    assert out.shape == (1, 10)


def test_data_has_the_digits_splits_upsampled_to_three_channels() -> None:
    doc = data_128()
    x, y = next(iter(doc["validation"]))
    assert x.shape == (32, 3, 128, 128) and y.shape == (32,)
    assert torch.equal(x[:, 0], x[:, 2])
    small = splits()
    assert {k: len(v.dataset) for k, v in large_loaders(64).items()} == \
        {k: len(v[1]) for k, v in small.items()}
    assert torch.equal(y, small["validation"][1][:32])
    assert doc["preprocessing"]["steps"][-1] == {"op": "repeat_channels", "channels": 3}


def test_upsampling_keeps_the_image() -> None:
    x = splits()["validation"][0][:4]
    back = torch.nn.functional.avg_pool2d(upsample(x, 128), 4)[:, :1]
    assert torch.allclose(back, x, atol=0.35)


def test_too_small_a_size_is_refused() -> None:
    with pytest.raises(ValueError, match="below the 32x32 source"):
        large_loaders(16)
