"""Structured pruning removes channels for real, keeps the classifier, works on residual and
depthwise models, and reaches its MAC (or latency) target."""

from __future__ import annotations

import pytest
import torch

from compress.prune import IMPORTANCE, MEASURES, count_macs, protected_layers, prune
from compress.recipe import PruneConfig

EXAMPLE = torch.randn(1, 1, 16, 16)


@pytest.mark.parametrize("importance", IMPORTANCE.keys())
def test_prune_halves_macs_and_keeps_the_classifier(tiny_teacher, importance):
    cfg = PruneConfig(importance=importance, round_to=None)
    result = prune(tiny_teacher, EXAMPLE, cfg, 0.5)
    model = result.model
    assert result.macs_after <= 0.5 * result.macs_before
    assert result.params_after < result.params_before
    assert model.fc.out_features == 4
    assert model.dw[0].groups == model.dw[0].in_channels == model.dw[0].out_channels
    assert model(torch.randn(3, 1, 16, 16)).shape == (3, 4)
    assert tiny_teacher.stem[0].out_channels == 16  # the original is untouched


def test_ratio_zero_is_a_copy(tiny_teacher):
    result = prune(tiny_teacher, EXAMPLE, PruneConfig(), 0.0)
    assert result.steps == 0 and result.macs_after == result.macs_before
    assert result.model is not tiny_teacher


def test_user_named_layers_are_protected(tiny_teacher):
    cfg = PruneConfig(protect=["down.*"], round_to=None)
    assert tiny_teacher.down[0] in protected_layers(tiny_teacher, EXAMPLE, cfg.protect)
    result = prune(tiny_teacher, EXAMPLE, cfg, 0.4)
    assert result.model.down[0].out_channels == 32


def test_pruned_model_exports_smaller(tiny_teacher, tmp_path):
    result = prune(tiny_teacher, EXAMPLE, PruneConfig(round_to=None), 0.6)
    sizes = []
    for name, model in (("full", tiny_teacher), ("pruned", result.model)):
        path = tmp_path / f"{name}.onnx"
        torch.onnx.export(model.eval(), (EXAMPLE,), str(path), dynamo=False, opset_version=17)
        sizes.append(path.stat().st_size)
    assert sizes[1] < 0.6 * sizes[0]


def test_every_measure_is_registered_and_positive(tiny_teacher):
    for name in MEASURES:
        assert MEASURES.get(name)(tiny_teacher, EXAMPLE) > 0
    assert count_macs(tiny_teacher, EXAMPLE) > 1e5


def test_latency_target(tiny_teacher):
    result = prune(tiny_teacher, EXAMPLE, PruneConfig(measure="latency", steps=10), 0.3)
    assert result.measure == "latency" and result.steps >= 1
    assert result.macs_after < result.macs_before
