"""neural-compressor on the PyTorch side: a real int8 graph, calibrated, optionally autotuned."""

from __future__ import annotations

import pytest
import torch

from compress.evaluation import top1_accuracy
from compress.quantize_torch import inc_quantize
from compress.recipe import IncConfig
from tests.compress.tiny import tiny_tensors

pytestmark = pytest.mark.slow


def _quant_ops(graph) -> int:
    return sum("quantize_per" in str(node.target) for node in graph.graph.nodes)


@pytest.mark.parametrize("autotune", [False, True])
def test_inc_static_int8_keeps_accuracy(tiny_teacher, tiny_validation, autotune):
    calib = list(torch.split(tiny_tensors(32, 2)[0], 8))
    x, y = tiny_validation

    def evaluate(model):
        with torch.no_grad():
            return top1_accuracy(model(x), y)

    quantized = inc_quantize(tiny_teacher, x[:1], calib, IncConfig(autotune=autotune,
                                                                    max_trials=2),
                             evaluate if autotune else None, tolerable_loss=0.05)
    assert _quant_ops(quantized) > 0
    with torch.no_grad():
        out = quantized(x)
    assert out.shape == (64, 4)
    assert top1_accuracy(out, y) >= top1_accuracy(tiny_teacher(x), y) - 0.05
