"""Structured pruning of attention blocks: whole heads and the feed-forward width.

A transformer's residual stream (the embedding width) runs through every block, the
patch or token embedding, the class token and the positions, so pruning it (what
torch-pruning's dependency graph does to ``nn.MultiheadAttention``, whose inner width
must equal the embedding width) shrinks every layer's input and costs the most accuracy.
The cheap parts to remove are inside each block: attention heads (their query, key and
value rows and their columns of the output projection) and the hidden units of the
feed-forward layers (rows of ``linear1``, columns of ``linear2``). Neither touches the
residual width, so the rest of the model is unchanged.

``nn.MultiheadAttention`` cannot hold fewer heads than its embedding width allows, so a
pruned block's attention becomes ``PrunedAttention``: the same computation (one fused
input projection, ``scaled_dot_product_attention`` at the original scale, an output
projection) with any number of heads. It answers the calls ``nn.TransformerEncoderLayer``
makes, and its ``in_proj_bias`` of None keeps PyTorch's fused fast path (which needs an
``nn.MultiheadAttention``) away.

Importance is the L2 norm of the weights a head or hidden unit owns (its rows of the
input projection and its columns of the output one), ranked within each block; every
block keeps the same share, found by bisection so that the model's measure (MACs or
latency, as for convolutions) falls to the target.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class PrunedAttention(nn.Module):
    """Multi-head attention with ``heads`` heads of ``head_dim`` each, independent of the
    embedding width, called like ``nn.MultiheadAttention`` (returns ``(output, None)``)."""

    in_proj_bias = None  # keeps nn.TransformerEncoderLayer's fused fast path off
    _qkv_same_embed_dim = False

    def __init__(self, embed_dim: int, heads: int, head_dim: int, scale: float,
                 batch_first: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, heads, head_dim
        self.scale, self.batch_first = scale, batch_first
        self.in_proj = nn.Linear(embed_dim, 3 * heads * head_dim, bias=bias)
        self.out_proj = nn.Linear(heads * head_dim, embed_dim, bias=bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, None]:
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        inner = self.num_heads * self.head_dim
        if query is key and key is value:  # self-attention: one matmul
            q, k, v = self.in_proj(query).split(inner, dim=-1)
        else:
            w, b = self.in_proj.weight.split(inner), (
                self.in_proj.bias.split(inner) if self.in_proj.bias is not None
                else (None, None, None))
            q, k, v = (F.linear(t, wi, bi) for t, wi, bi in zip((query, key, value), w, b,
                                                                  strict=True))
        batch, length = query.shape[0], query.shape[1]
        q, k, v = (t.reshape(batch, t.shape[1], self.num_heads, self.head_dim).transpose(1, 2)
                   for t in (q, k, v))
        mask = _mask(attn_mask, key_padding_mask, q.dtype, batch, self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             is_causal=is_causal and mask is None,
                                             scale=self.scale)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, length, inner))
        return (out if self.batch_first else out.transpose(0, 1)), None


def _mask(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None,
          dtype: torch.dtype, batch: int, heads: int) -> torch.Tensor | None:
    """One additive (or boolean 'attend') mask for scaled_dot_product_attention from
    nn.MultiheadAttention's two (True there means 'do not attend')."""
    masks = []
    for m in (attn_mask, key_padding_mask):
        if m is None:
            continue
        if m is key_padding_mask:
            m = m[:, None, None, :]
        elif m.dim() == 3:  # (batch * heads, L, S)
            m = m.reshape(batch, heads, *m.shape[1:])
        masks.append(torch.zeros_like(m, dtype=dtype).masked_fill(m, -math.inf)
                     if m.dtype == torch.bool else m.to(dtype))
    if not masks:
        return None
    return masks[0] if len(masks) == 1 else masks[0] + masks[1]


@dataclass
class Block:
    """One attention block: its module, the attention inside it and the feed-forward
    pair (None when the block has none)."""

    name: str
    module: nn.Module
    ffn: tuple[nn.Linear, nn.Linear] | None

    @property
    def attention(self) -> nn.Module:
        return self.module.self_attn

    def heads(self) -> int:
        return int(self.attention.num_heads)

    def width(self) -> int | None:
        return self.ffn[0].out_features if self.ffn else None

    def describe(self) -> dict[str, Any]:
        return {"block": self.name, "heads": self.heads(), "ffn": self.width()}


def blocks(model: nn.Module) -> list[Block]:
    """The model's attention blocks: modules with a ``self_attn`` (``nn.MultiheadAttention``
    with equal query, key and value widths, or ``PrunedAttention``), and their
    ``linear1``/``linear2`` feed-forward pair when they have one (the layout of
    ``nn.TransformerEncoderLayer`` and ``nn.TransformerDecoderLayer``)."""
    found = []
    for name, module in model.named_modules():
        attention = getattr(module, "self_attn", None)
        if not (isinstance(attention, PrunedAttention) or (
                isinstance(attention, nn.MultiheadAttention) and attention._qkv_same_embed_dim)):
            continue
        one, two = getattr(module, "linear1", None), getattr(module, "linear2", None)
        ffn = (one, two) if isinstance(one, nn.Linear) and isinstance(two, nn.Linear) else None
        found.append(Block(name, module, ffn))
    return found


def as_pruned(attention: nn.Module) -> PrunedAttention:
    """``attention`` as a ``PrunedAttention`` computing the same function."""
    if isinstance(attention, PrunedAttention):
        return attention
    mha: nn.MultiheadAttention = attention
    head_dim = mha.embed_dim // mha.num_heads
    out = PrunedAttention(mha.embed_dim, mha.num_heads, head_dim, 1 / math.sqrt(head_dim),
                          mha.batch_first, bias=mha.in_proj_bias is not None)
    with torch.no_grad():
        out.in_proj.weight.copy_(mha.in_proj_weight)
        out.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.in_proj_bias is not None:
            out.in_proj.bias.copy_(mha.in_proj_bias)
            out.out_proj.bias.copy_(mha.out_proj.bias)
    return out.to(mha.out_proj.weight.device)


def head_importance(attention: PrunedAttention) -> torch.Tensor:
    """The L2 norm of each head's query, key and value rows and output columns."""
    h, d = attention.num_heads, attention.head_dim
    w = attention.in_proj.weight.detach().reshape(3, h, d, -1)
    o = attention.out_proj.weight.detach().reshape(-1, h, d)
    return (w.pow(2).sum((0, 2, 3)) + o.pow(2).sum((0, 2))).sqrt()


def keep_heads(attention: PrunedAttention, kept: list[int]) -> PrunedAttention:
    """A copy of ``attention`` with only the heads ``kept``."""
    h, d = attention.num_heads, attention.head_dim
    out = PrunedAttention(attention.embed_dim, len(kept), d, attention.scale,
                          attention.batch_first, bias=attention.in_proj.bias is not None)
    index = torch.tensor(kept)
    rows = (torch.arange(3)[:, None, None] * h * d + index[None, :, None] * d
            + torch.arange(d)[None, None, :]).flatten()
    cols = (index[:, None] * d + torch.arange(d)[None, :]).flatten()
    with torch.no_grad():
        out.in_proj.weight.copy_(attention.in_proj.weight[rows])
        out.out_proj.weight.copy_(attention.out_proj.weight[:, cols])
        if attention.in_proj.bias is not None:
            out.in_proj.bias.copy_(attention.in_proj.bias[rows])
            out.out_proj.bias.copy_(attention.out_proj.bias)
    return out


def keep_hidden(one: nn.Linear, two: nn.Linear, width: int) -> tuple[nn.Linear, nn.Linear]:
    """The feed-forward pair with its ``width`` most important hidden units."""
    score = one.weight.detach().pow(2).sum(1) + two.weight.detach().pow(2).sum(0)
    kept = score.topk(width).indices.sort().values
    first = nn.Linear(one.in_features, width, bias=one.bias is not None)
    second = nn.Linear(width, two.out_features, bias=two.bias is not None)
    with torch.no_grad():
        first.weight.copy_(one.weight[kept])
        second.weight.copy_(two.weight[:, kept])
        if one.bias is not None:
            first.bias.copy_(one.bias[kept])
        if two.bias is not None:
            second.bias.copy_(two.bias)
    return first, second


@dataclass(frozen=True)
class Cut:
    """The share of each block's heads and hidden units to remove."""

    share: float
    heads: bool = True
    ffn: bool = True
    round_to: int = 8

    def heads_left(self, heads: int) -> int:
        return max(1, round(heads * (1 - self.share))) if self.heads else heads

    def width_left(self, width: int) -> int:
        if not self.ffn:
            return width
        kept = width * (1 - self.share)
        step = self.round_to if width > self.round_to else 1
        return int(min(width, max(step, round(kept / step) * step)))


def cut(model: nn.Module, spec: Cut) -> nn.Module:
    """A copy of ``model`` whose attention blocks keep ``1 - spec.share`` of their heads
    and feed-forward width (at least one head; the width in steps of ``round_to``)."""
    pruned = copy.deepcopy(model)
    for block in blocks(pruned):
        attention = as_pruned(block.attention)
        scores = head_importance(attention)
        n = spec.heads_left(attention.num_heads)
        kept = sorted(scores.topk(n).indices.tolist())
        block.module.self_attn = keep_heads(attention, kept)
        if block.ffn is not None:
            one, two = block.ffn
            block.module.linear1, block.module.linear2 = keep_hidden(
                one, two, spec.width_left(one.out_features))
    return pruned.eval()


def prune_attention(model: nn.Module, example: torch.Tensor,
                    measure: Callable[[nn.Module, torch.Tensor], float], target: float,
                    spec: Cut, max_share: float, resolution: float = 0.01
                    ) -> tuple[nn.Module, float, float]:
    """The least-cut copy of ``model`` whose ``measure`` is at most ``target``, bisecting
    the share of heads and hidden units removed (up to ``max_share``); the copy, its
    measure and the share. At ``max_share`` when the target is out of reach."""
    low, high = 0.0, max_share
    best = cut(model, Cut(high, spec.heads, spec.ffn, spec.round_to))
    best_value, best_share = measure(best, example), high
    if best_value > target:
        return best, best_value, best_share
    while high - low > resolution:
        middle = (low + high) / 2
        candidate = cut(model, Cut(middle, spec.heads, spec.ffn, spec.round_to))
        value = measure(candidate, example)
        if value <= target:
            high, best, best_value, best_share = middle, candidate, value, middle
        else:
            low = middle
    return best, best_value, best_share


def attention_macs(model: nn.Module, example: torch.Tensor) -> float:
    """The multiply-accumulates of ``PrunedAttention``'s score and weighting products
    (2 * L * S * heads * head_dim per sample), which module-hook counters such as
    torch-pruning's miss (they count ``nn.MultiheadAttention``'s)."""
    total = 0.0

    def hook(module: PrunedAttention, args: tuple[Any, ...], _: Any) -> None:
        nonlocal total
        query, key = args[0], args[1]
        batch_dim = 0 if module.batch_first else 1
        total += (2.0 * query.shape[batch_dim] * query.shape[1 - batch_dim]
                  * key.shape[1 - batch_dim] * module.num_heads * module.head_dim)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, PrunedAttention)]
    if not handles:
        return 0.0
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    return total


def shapes(model: nn.Module) -> Iterator[dict[str, Any]]:
    """Each attention block's heads and feed-forward width (for the report)."""
    for block in blocks(model):
        yield block.describe()
