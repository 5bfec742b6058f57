"""Run torch models over a data set and score them with the user's metric."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from compress import labels as label_tools
from compress.outputs import concat, to_torch
from edge_agent.errors import first_line

Metric = Callable[[torch.Tensor, torch.Tensor], float]


def top1_accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples whose highest score is the label (the default metric)."""
    return float((outputs.argmax(dim=1) == labels.to(outputs.device)).float().mean())


def batches_in(loader: Any) -> int | None:
    """How many batches a loader yields, or None when it cannot tell (iterable data sets)."""
    try:
        return len(loader)
    except TypeError:
        return None


def collect(loader: Any, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All (inputs, labels) of a loader as two tensors, at most ``limit`` samples (detection
    labels padded, ``compress.labels``)."""
    xs, ys, seen = [], [], 0
    for inputs, labels in loader:
        xs.append(inputs.float())
        ys.append(label_tools.batch_labels(labels))
        seen += len(inputs)
        if limit is not None and seen >= limit:
            break
    x, y = torch.cat(xs), label_tools.join(ys)
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: torch.Tensor, batch: int = 256) -> Any:
    """The model's outputs for ``inputs``, in eval mode, batch by batch, without autograd
    (a graph kept for every batch would hold all their activations until the end): a
    tensor, or a tuple of tensors for a model with several outputs (``compress.outputs``)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outs = [model(inputs[i:i + batch]) for i in range(0, len(inputs), batch)]
    model.train(was_training)
    return to_torch(concat(outs))


def score(metric: Metric, outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """The metric as a float; a metric returning something else is a user error."""
    from compress.errors import UserCodeError

    try:
        value = metric(outputs, labels)
    except Exception as exc:  # user code: any error is theirs to fix
        raise UserCodeError(f"the metric raised {type(exc).__name__}: {first_line(exc, 200)}; "
                            "it must take "
                            "(outputs, labels) and return a float") from exc
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserCodeError(f"the metric returned {type(value).__name__}; it must return a "
                            "float (higher is better)") from None
