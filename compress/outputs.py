"""A model's outputs as one value: a tensor / array for a single-output model, a tuple of
them for a model with several outputs. Helpers that work on both, so single-output
classifiers keep their plain tensors and multi-output models go through the same code."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

Outputs = Any  # torch.Tensor | np.ndarray | tuple of them


def as_list(outputs: Outputs) -> list[Any]:
    """The outputs as a list, one entry per model output."""
    if isinstance(outputs, tuple | list):
        return list(outputs)
    if isinstance(outputs, dict):
        return list(outputs.values())
    return [outputs]


def from_list(parts: Sequence[Any]) -> Outputs:
    """The inverse of ``as_list``: one output as itself, several as a tuple."""
    return parts[0] if len(parts) == 1 else tuple(parts)


def each(outputs: Outputs, fn: Callable[[Any], Any]) -> Outputs:
    """``fn`` applied to every output, keeping the single / tuple shape."""
    return from_list([fn(o) for o in as_list(outputs)])


def take(outputs: Outputs, index: Any) -> Outputs:
    """The samples ``index`` (batch axis) of every output."""
    return each(outputs, lambda o: o[index])


def concat(batches: Sequence[Outputs]) -> Outputs:
    """Batches of outputs joined along the batch axis, output by output."""
    columns = zip(*(as_list(b) for b in batches), strict=True)
    joined = [torch.cat(c) if isinstance(c[0], torch.Tensor) else np.concatenate(c)
              for c in columns]
    return from_list(joined)


def to_numpy(outputs: Outputs) -> Outputs:
    """Float32 numpy arrays."""
    return each(outputs, lambda o: o.detach().float().numpy() if isinstance(o, torch.Tensor)
                else np.asarray(o, dtype=np.float32))


def to_torch(outputs: Outputs) -> Outputs:
    """Float32 torch tensors."""
    return each(outputs, lambda o: o.float() if isinstance(o, torch.Tensor)
                else torch.from_numpy(np.ascontiguousarray(o, dtype=np.float32)))


def count(outputs: Outputs) -> int:
    """How many outputs the model has."""
    return len(as_list(outputs))
