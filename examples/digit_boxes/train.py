"""Train a digit-boxes detector and save its state_dict.

    python examples/digit_boxes/train.py -o weights.pt [--epochs N] [--large]

AdamW with a one-cycle cosine schedule on the train split, then mAP@0.5 and
mAP@0.5:0.95 on the validation split (the build's metric: the device's post-processing,
pycocotools' COCO evaluation). ``train`` and ``evaluate_map`` are the same steps as functions
(used by the tests, the demo and the benchmarks).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):   # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from compress import progress
from compress.tasks.detection import mean_average_precision
from edge_agent.contracts.task import DetectionSpec
from examples.digit_boxes.data import TASK, loaders
from examples.digit_boxes.models import digit_detector, digit_detector_large, train_loss

DEFAULT_EPOCHS = 12
LEARNING_RATE = 3e-3


def train(model: torch.nn.Module, data: dict[str, Any], epochs: int = DEFAULT_EPOCHS,
          seed: int = 0, log: list[float] | None = None,
          lr: float = LEARNING_RATE) -> torch.nn.Module:
    """Train ``model`` in place on ``data["train"]`` (batches of images and padded labels),
    peak learning rate ``lr`` (lower to fine-tune); appends each epoch's mean loss to ``log``
    when given. Returns the model in eval mode."""
    torch.manual_seed(seed)
    batches = data["train"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * len(batches), pct_start=0.1)
    for epoch in range(epochs):
        model.train()
        losses = []
        for images, labels in progress.track(batches, f"training epoch {epoch + 1}/{epochs}",
                                             total=len(batches)):
            loss = train_loss(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        if log is not None:
            log.append(float(np.mean(losses)))
    return model.eval()


def detection_spec() -> DetectionSpec:
    """The deployed task's decoding (``TASK``): what the device and the build post-process."""
    return DetectionSpec.from_dict(TASK["detection"])


def evaluate_map(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int = 100) -> dict[str, float]:
    """mAP@0.5 (``map_50``) and mAP@0.5:0.95 (``map``) of ``model`` on inputs ``x`` and padded
    labels ``y`` [N, M, 5]: the build's own metric (``compress.tasks.detection``: the device's
    post-processing at COCO's score floor, scored by pycocotools' ``COCOeval``)."""
    model.eval()
    with torch.no_grad():
        outputs = torch.cat([model(x[start:start + batch_size])
                             for start in range(0, len(x), batch_size)])
    return mean_average_precision(outputs, y, detection_spec())


def main() -> None:
    """Command line: train the small (or ``--large``) detector and save its weights."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=Path("weights.pt"))
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--large", action="store_true", help="train digit_detector_large")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    progress.enable()
    started = time.monotonic()
    torch.manual_seed(args.seed)
    model = digit_detector_large() if args.large else digit_detector()
    data = loaders(seed=args.seed)
    train(model, data, args.epochs, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    scores = evaluate_map(model, *data["validation"].dataset.tensors)
    print(f"{'large' if args.large else 'small'} detector, {args.epochs} epochs: validation "
          f"mAP@0.5 {scores['map_50']:.4f}, mAP@0.5:0.95 {scores['map']:.4f}; saved {args.out} "
          f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
