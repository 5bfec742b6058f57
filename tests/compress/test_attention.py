"""Pruning attention blocks (``compress/attention.py``): ``PrunedAttention`` computes what
``nn.MultiheadAttention`` computes (masks, sequence-first layout); the heads and hidden
units with the least weight go first; ``prune`` reaches its MAC target by heads and
feed-forward width while the embedding width stays; and the pruned model exports to
ONNX and LiteRT files that compute the same in their real runtimes, in fp32 and int8."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compress.attention import (
    Cut,
    PrunedAttention,
    as_pruned,
    blocks,
    cut,
    head_importance,
)
from compress.prune import count_macs, prune
from compress.recipe import PruneConfig

WIDTH, HEADS, TOKENS = 32, 4, 9


class TinyTransformer(nn.Module):
    """Rows of a 9x9 image as tokens, two encoder layers, a linear head."""

    def __init__(self, norm_first: bool = True) -> None:
        super().__init__()
        self.embed = nn.Linear(TOKENS, WIDTH)
        self.pos = nn.Parameter(torch.randn(1, TOKENS, WIDTH) * 0.1)
        layer = nn.TransformerEncoderLayer(WIDTH, HEADS, 64, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.encoder(self.embed(x.reshape(x.shape[0], TOKENS, TOKENS)) + self.pos)
        return self.head(y.mean(1))


def _mha(batch_first: bool = True) -> nn.MultiheadAttention:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(WIDTH, HEADS, batch_first=batch_first).eval()
    with torch.no_grad():
        mha.in_proj_bias.uniform_(-0.5, 0.5)
    return mha


@pytest.mark.parametrize("batch_first", [True, False])
def test_pruned_attention_computes_what_multihead_attention_computes(batch_first):
    mha = _mha(batch_first)
    ours = as_pruned(mha)
    x = torch.randn(2, 5, WIDTH) if batch_first else torch.randn(5, 2, WIDTH)
    other = torch.randn(*x.shape)
    padding = torch.tensor([[False] * 4 + [True], [False] * 5])
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    with torch.no_grad():
        for args, kwargs in [((x, x, x), {}), ((x, other, other), {}),
                             ((x, x, x), {"key_padding_mask": padding}),
                             ((x, x, x), {"attn_mask": causal}),
                             ((x, x, x), {"attn_mask": causal.isinf(),
                                          "key_padding_mask": padding})]:
            expected = mha(*args, need_weights=False, **kwargs)[0]
            got, weights = ours(*args, **kwargs)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
            assert weights is None


def test_the_weakest_head_and_hidden_units_go_first():
    model = TinyTransformer().eval()
    layer = model.encoder.layers[0]
    with torch.no_grad():  # head 2 of the first layer: tiny weights
        layer.self_attn.in_proj_weight.view(3, HEADS, WIDTH // HEADS, WIDTH)[:, 2] *= 1e-3
        layer.self_attn.out_proj.weight.view(WIDTH, HEADS, -1)[:, 2] *= 1e-3
        layer.linear1.weight[:16] *= 1e-3
    scores = head_importance(as_pruned(layer.self_attn))
    assert int(scores.argmin()) == 2
    pruned = cut(model, Cut(0.25, round_to=8))
    first = blocks(pruned)[0]
    assert first.heads() == 3 and first.width() == 48
    assert isinstance(first.attention, PrunedAttention)
    # the kept heads are 0, 1 and 3: head 3's query rows now sit where head 2's were
    head = WIDTH // HEADS
    torch.testing.assert_close(first.attention.in_proj.weight[2 * head:3 * head],
                               layer.self_attn.in_proj_weight[3 * head:4 * head])
    kept = first.module.linear1.weight
    assert not any(torch.equal(kept[i], layer.linear1.weight[j]) for i in range(48)
                   for j in range(16))  # none of the weakened hidden units is left


@pytest.mark.parametrize("norm_first", [True, False])
def test_prune_reaches_its_target_by_heads_and_width_and_keeps_the_embedding(norm_first):
    torch.manual_seed(0)
    model = TinyTransformer(norm_first).eval()
    x = torch.randn(4, 1, TOKENS, TOKENS)
    result = prune(model, x[:1], PruneConfig(), 0.5)
    assert result.structure == "attention" and result.after <= 0.5 * result.before
    assert result.after > 0.35 * result.before  # the least cut that reaches it
    [a, b] = result.summary()["attention"]
    assert a["heads_before"] == HEADS and a["ffn_before"] == 64
    assert a["heads"] < HEADS and a["ffn"] < 64 and (a["heads"], a["ffn"]) == (b["heads"],
                                                                            b["ffn"])
    pruned = result.model
    assert pruned.embed.out_features == WIDTH and pruned.head.in_features == WIDTH
    assert all(layer.norm1.normalized_shape == (WIDTH,) for layer in pruned.encoder.layers)
    assert pruned(x).shape == (4, 3)
    assert count_macs(pruned, x[:1]) == pytest.approx(result.macs_after)
    # progressive: the student is pruned further from where it is
    more = prune(pruned, x[:1], PruneConfig(), 0.75, original=result.before)
    assert more.after <= 0.25 * result.before
    assert more.summary()["attention"][0]["heads_before"] == a["heads"]


def test_a_ratio_beyond_the_least_attention_blocks_says_it_is_exhausted():
    torch.manual_seed(0)
    x = torch.randn(1, 1, TOKENS, TOKENS)
    result = prune(TinyTransformer().eval(), x, PruneConfig(), 0.97)
    # at max_channel_ratio (0.9): one head of four, 64 hidden units to 8 (round_to)
    assert [(b["heads"], b["ffn"]) for b in result.summary()["attention"]] == [(1, 8)] * 2
    assert result.summary()["exhausted"].startswith("ratio 0.97 asked, 0.")
    assert result.summary()["exhausted"].endswith("the attention blocks are at their least "
                                                  "(heads and feed-forward width)")
    assert "exhausted" not in prune(TinyTransformer().eval(), x, PruneConfig(), 0.5).summary()


def test_the_recipe_can_keep_heads_or_hand_attention_to_channel_pruning():
    torch.manual_seed(0)
    model = TinyTransformer().eval()
    x = torch.randn(1, 1, TOKENS, TOKENS)
    width_only = prune(model, x, PruneConfig(attention={"heads": False}), 0.3)
    assert {b["heads"] for b in width_only.summary()["attention"]} == {HEADS}
    channels = prune(model, x, PruneConfig(attention={"enabled": False}), 0.3)
    assert channels.structure == "channels" and "attention" not in channels.summary()


@pytest.mark.parametrize(("fmt", "precision", "tolerance"), [
    ("onnx", "fp32", 1e-4), ("tflite", "fp32", 1e-4),
    ("onnx", "int8", 0.15), ("tflite", "int8", 0.15)])
def test_a_pruned_transformer_exports_and_computes_the_same_in_its_runtime(
        tmp_path, fmt, precision, tolerance):
    from export.registry import exporter_for, quantizers_for
    from export.runner import ExportedModel
    from tests.export.conftest import make_job, make_target

    torch.manual_seed(0)
    model = prune(TinyTransformer().eval(), torch.randn(1, 1, TOKENS, TOKENS), PruneConfig(),
                  0.5).model
    x = torch.randn(16, 1, TOKENS, TOKENS)
    target = make_target(fmt, precision)
    if precision == "fp32":
        path = exporter_for(fmt).export(model, x[:1], target, tmp_path / f"m{fmt}")
    else:
        job = make_job(model, x[:1], torch.randn(32, 1, TOKENS, TOKENS), target, tmp_path)
        quantizer = quantizers_for(fmt, precision)[0]
        path = quantizer.run(job, tmp_path / f"int8.{fmt}")
    got = ExportedModel(fmt, path, target.runtime_options()).predict(x.numpy())
    with torch.no_grad():
        expected = model(x).numpy()
    scale = np.abs(expected).max()
    assert np.abs(np.asarray(got) - expected).max() <= tolerance * scale


def test_attention_students_distil_at_a_tenth_of_the_default_rate_unless_the_recipe_says():
    from compress.distill import rate_for
    from compress.recipe import Recipe
    from tests.compress.tiny import TinyNet

    default = Recipe().distill
    assert rate_for(TinyTransformer(), default).lr == pytest.approx(default.lr / 10)
    assert rate_for(TinyNet(), default).lr == default.lr  # convolutions: as before
    chosen = Recipe.from_dict({"distill": {"lr": 0.01}}).distill
    assert rate_for(TinyTransformer(), chosen).lr == 0.01  # the recipe's own rate


def test_distillation_reports_the_rate_it_used():
    from torch.utils.data import DataLoader, TensorDataset

    from compress.distill import distill
    from compress.evaluation import top1_accuracy
    from compress.recipe import DistillConfig

    torch.manual_seed(0)
    x, y = torch.randn(32, 1, TOKENS, TOKENS), torch.randint(0, 3, (32,))
    teacher, student = TinyTransformer().eval(), TinyTransformer()
    result = distill(student, teacher, DataLoader(TensorDataset(x, y), batch_size=16),
                     (x, y), top1_accuracy, DistillConfig(epochs=1))
    assert result.summary()["lr"] == pytest.approx(DistillConfig().lr / 10)
