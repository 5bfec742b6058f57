"""Train a digits baseline and save its state_dict.

    python -m examples.digits.train --model mobilenetv2 -o weights.pt

Takes about a minute for the MobileNetV2-style net on two cores (seconds for the
small CNN). ``train_baseline`` is the same thing as a function (used by the demo,
the tests and the benchmark).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from compress import progress
from compress.evaluation import predict, top1_accuracy
from examples.digits.data import loaders
from examples.digits.models import ARCHITECTURES

DEFAULT_EPOCHS = {"small_cnn": 12, "mobilenetv2": 8}
LEARNING_RATE = 4e-3


def train(model: torch.nn.Module, epochs: int, seed: int = 0,
          data: dict[str, Any] | None = None) -> float:
    """Train ``model`` in place on the train loader of ``data`` (default: the digits
    splits); returns the accuracy on its validation loader."""
    torch.manual_seed(seed)
    data = data or loaders(seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LEARNING_RATE, total_steps=epochs * len(data["train"]))
    for epoch in range(epochs):
        model.train()
        for inputs, labels in progress.track(data["train"], f"training epoch {epoch + 1}/"
                                             f"{epochs}", total=len(data["train"])):
            loss = F.cross_entropy(model(inputs), labels, label_smoothing=0.05)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    val_x, val_y = data["validation"].dataset.tensors
    return top1_accuracy(predict(model.eval(), val_x), val_y)


def train_baseline(arch: str = "mobilenetv2", out_path: Path | str = "weights.pt",
                   epochs: int | None = None, seed: int = 0) -> tuple[Path, float]:
    """Train ``arch`` (``small_cnn`` or ``mobilenetv2``), save its state_dict to ``out_path``.

    Returns the path and the validation accuracy.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    model = ARCHITECTURES[arch]()
    accuracy = train(model, epochs or DEFAULT_EPOCHS[arch], seed)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    return out, accuracy


def main() -> None:
    """Command line: train one architecture and save its weights."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(ARCHITECTURES), default="mobilenetv2")
    parser.add_argument("-o", "--out", type=Path, default=Path("weights.pt"))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    progress.enable()
    started = time.monotonic()
    path, accuracy = train_baseline(args.model, args.out, args.epochs, args.seed)
    print(f"{args.model}: validation accuracy {accuracy:.4f}, saved {path} "
          f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
