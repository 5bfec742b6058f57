"""Train a digit-boxes detector and save its state_dict.

    python examples/digit_boxes/train.py -o weights.pt [--epochs N] [--large]

AdamW with a one-cycle cosine schedule on the train split, then mAP@0.5 and
mAP@0.5:0.95 on the validation split (pycocotools' COCO evaluation). ``train``,
``decode`` and ``evaluate_map`` are the same steps as functions (used by the tests).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):   # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from compress import progress
from examples.digit_boxes.data import TASK, loaders
from examples.digit_boxes.models import digit_detector, digit_detector_large, to_xyxy, train_loss

DEFAULT_EPOCHS = 12
LEARNING_RATE = 3e-3
EVAL_SCORE_THRESHOLD = 0.001     # keep low scores for mAP (the deployed threshold is TASK's)


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


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept xyxy ``boxes``, best first."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    top_left = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=-1)
    iou = inter / (area[:, None] + area[None, :] - inter + 1e-9)
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for i in range(len(boxes)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= iou[i] > iou_threshold
    return order[np.array(keep, dtype=np.int64)]


def decode(outputs: torch.Tensor, score_threshold: float = TASK["detection"]["score_threshold"],
           iou_threshold: float = TASK["detection"]["iou_threshold"],
           max_detections: int = TASK["detection"]["max_detections"]) -> list[dict[str, Any]]:
    """Outputs [B, 4 + C, N] -> per image {"boxes" [K, 4] xyxy pixels, "scores", "labels"}:
    best class per point, score threshold, per-class NMS, the top ``max_detections``."""
    boxes = to_xyxy(outputs).numpy()
    scores, classes = outputs[:, 4:].max(1)
    results = []
    for b, s, c in zip(boxes, scores.numpy(), classes.numpy(), strict=True):
        kept = s >= score_threshold
        b, s, c = b[kept], s[kept], c[kept]
        # one NMS for all classes: offsetting each class's boxes keeps classes apart
        keep = nms(b + c[:, None] * 1000.0, s, iou_threshold)[:max_detections]
        results.append({"boxes": torch.as_tensor(b[keep]), "scores": torch.as_tensor(s[keep]),
                        "labels": torch.as_tensor(c[keep])})
    return results


def evaluate_map(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int = 100) -> dict[str, float]:
    """mAP@0.5 (``map_50``) and mAP@0.5:0.95 (``map``) of ``model`` on inputs ``x`` and padded
    labels ``y`` [N, M, 5], by pycocotools' COCO evaluation (what torchmetrics'
    ``MeanAveragePrecision(backend="pycocotools")`` runs; that class needs torchvision)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    model.eval()
    with torch.no_grad():
        predictions = [p for start in range(0, len(x), batch_size)
                       for p in decode(model(x[start:start + batch_size]),
                                       EVAL_SCORE_THRESHOLD, max_detections=100)]
    truth = []
    for i, rows in enumerate(y.tolist()):
        for c, x1, y1, x2, y2 in rows:
            if c >= 0:
                truth.append({"id": len(truth) + 1, "image_id": i, "category_id": int(c),
                              "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                              "iscrowd": 0})
    found = [{"image_id": i, "category_id": int(c), "score": float(s),
              "bbox": [x1, y1, x2 - x1, y2 - y1]}
             for i, p in enumerate(predictions)
             for (x1, y1, x2, y2), s, c in zip(p["boxes"].tolist(), p["scores"], p["labels"],
                                               strict=True)]
    if not found:
        return {"map_50": 0.0, "map": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):   # pycocotools prints its progress
        coco = COCO()
        coco.dataset = {"images": [{"id": i} for i in range(len(y))], "annotations": truth,
                        "categories": [{"id": c} for c in range(TASK["detection"]["num_classes"])]}
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(found), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"map_50": float(evaluation.stats[1]), "map": float(evaluation.stats[0])}


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
