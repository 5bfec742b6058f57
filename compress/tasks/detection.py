"""``detection``: object detectors in a registered layout (``edge_agent.tasks.layouts``).

- metric: COCO mAP@0.5:0.95 (mAP@0.5 reported beside it) from pycocotools' ``COCOeval``,
  over the detections the device
  would give (``edge_agent.tasks.detection.postprocess`` at a 0.001 score floor, as
  COCO evaluation does); ``--tolerance`` is in mAP points (0.01 = one point);
- distillation: the student matches the teacher's raw outputs, head by head: class
  scores (binary cross-entropy to the teacher's scores when they are probabilities,
  else mean squared error) and box regressions (L1 in units of the input size,
  weighted by the teacher's confidence at each point, so background points do not
  dominate);
- parity: the post-processed detections of a file match torch's (``match``: same class,
  IoU >= 0.9, score within the precision's tolerance, at most one unmatched per image);
- reference statistics (detections per image, scores, classes, box areas) are made by
  ``export.refstats``, torch-free so ``bundle pack`` uses them too.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from compress.errors import UserCodeError
from compress.evaluation import Metric
from compress.labels import image_rows
from compress.outputs import as_list, to_numpy
from compress.recipe import DistillConfig
from compress.tasks.base import TASKS, BuildTask
from edge_agent.contracts.task import DetectionSpec
from edge_agent.errors import EdgekitError
from edge_agent.golden import TOLERANCES
from edge_agent.tasks.detection import Detections, agreement, postprocess
from edge_agent.tasks.layouts import check_output_shapes

MAP_SCORE_FLOOR = 0.001


def split_raw(outputs: Any, spec: DetectionSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """A layout's raw outputs as (box regressions [B, N, 4], class scores [B, N, C]), in torch
    (the distillation targets: no decoding, no thresholds)."""
    parts = as_list(outputs)
    if spec.layout == "yolov8":
        rows = parts[0].transpose(1, 2)
        return rows[..., :4], rows[..., 4:]
    if spec.layout == "yolov5":
        return parts[0][..., :4], parts[0][..., 4:]
    boxes, scores = parts
    return (boxes, scores) if boxes.shape[-1] == 4 else (scores, boxes)


def detections_of(outputs: Any, spec: DetectionSpec,
                  score_threshold: float | None = None) -> list[Detections]:
    """Post-processed detections of a batch of (torch or numpy) outputs."""
    return postprocess([np.asarray(o) for o in as_list(to_numpy(outputs))], spec,
                       score_threshold)


def mean_average_precision(outputs: Any, labels: torch.Tensor,
                           spec: DetectionSpec) -> dict[str, float]:
    """COCO mAP@0.5:0.95 and mAP@0.5 of a batch of outputs against padded labels, by
    pycocotools' ``COCOeval`` (the reference implementation; torchmetrics' wrapper of it
    needs torchvision, which has no CPU wheel here)."""
    found = detections_of(outputs, spec, MAP_SCORE_FLOOR)
    truth = image_rows(labels)
    if len(found) != len(truth):
        raise UserCodeError(f"{len(found)} images of outputs but {len(truth)} of labels")
    return coco_map(found, truth, spec.num_classes, spec.max_detections)


def coco_map(found: list[Detections], truth: list[torch.Tensor], num_classes: int,
             max_detections: int = 100) -> dict[str, float]:
    """COCOeval's bbox mAP@0.5:0.95 and mAP@0.5 (0 when there is nothing to score)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [{"id": i} for i in range(len(truth))]
    annotations = []
    for i, rows in enumerate(truth):
        for cls, x1, y1, x2, y2 in rows.tolist():
            w, h = x2 - x1, y2 - y1
            annotations.append({"id": len(annotations) + 1, "image_id": i,
                                "category_id": int(cls), "bbox": [x1, y1, w, h],
                                "area": w * h, "iscrowd": 0})
    results = [{"image_id": i, "category_id": int(c), "score": float(s),
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
               for i, d in enumerate(found) for b, s, c in zip(d.boxes, d.scores, d.classes,
                                                                strict=True)]
    if not annotations or not results:
        return {"map": 0.0, "map_50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints its progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c} for c in range(num_classes)]}
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        evaluation.params.maxDets = [1, 10, max(100, max_detections)]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"map": max(0.0, float(evaluation.stats[0])),
            "map_50": max(0.0, float(evaluation.stats[1]))}


@TASKS.register("detection")
class Detection(BuildTask):
    kind = "detection"
    metric_name = "map_50_95"
    metric_unit = "mAP"

    @property
    def detection(self) -> DetectionSpec:
        assert self.spec.detection is not None  # Task.problem() guarantees it
        return self.spec.detection

    def default_metric(self) -> Metric:
        spec = self.detection

        def map_50_95(outputs: Any, labels: torch.Tensor) -> float:
            return mean_average_precision(outputs, labels, spec)["map"]

        return map_50_95

    def check_outputs(self, outputs: Any, model: str) -> None:
        try:
            check_output_shapes(self.detection, [list(o.shape) for o in as_list(outputs)])
        except EdgekitError as exc:
            raise UserCodeError(f"model {model}: {exc}") from exc

    def distill_loss(self, student: Any, teacher: Any, labels: torch.Tensor,
                     cfg: DistillConfig) -> torch.Tensor:
        s_box, s_cls = split_raw(student, self.detection)
        t_box, t_cls = split_raw(teacher, self.detection)
        t_cls = t_cls.detach()
        probabilities = bool(t_cls.min() >= 0 and t_cls.max() <= 1)
        if probabilities:
            cls_loss = F.binary_cross_entropy(s_cls.clamp(1e-6, 1 - 1e-6), t_cls)
        else:
            cls_loss = F.mse_loss(s_cls, t_cls)
        weight = (t_cls.max(dim=-1).values if probabilities
                  else torch.sigmoid(t_cls).max(dim=-1).values)
        scale = 1.0 if self.detection.normalized_boxes else float(max(self.detection.input_size))
        box_err = (s_box - t_box.detach()).abs().sum(-1) / scale
        box_loss = (box_err * weight).sum() / weight.sum().clamp(min=1e-6)
        return cls_loss + box_loss

    def parity(self, outputs: Any, reference: Any, precision: str) -> dict[str, Any]:
        spec = self.detection
        score_tolerance = TOLERANCES.get(precision, TOLERANCES["fp32"])[0]
        figures = agreement(detections_of(reference, spec), detections_of(outputs, spec),
                            score_tolerance)
        raw = [np.abs(np.asarray(o, np.float64) - np.asarray(r, np.float64)).max()
               if np.shape(o) == np.shape(r) and np.size(o) else float("inf")
               for o, r in zip(as_list(outputs), as_list(reference), strict=False)]
        return {"max_abs_diff": round(float(max(raw)), 6), **figures,
                "score_tolerance": score_tolerance}

    def extra_figures(self, outputs: Any, labels: torch.Tensor) -> dict[str, Any]:
        figures = mean_average_precision(outputs, labels, self.detection)
        found = detections_of(outputs, self.detection)
        truth = [len(r) for r in image_rows(labels)]
        return {"map_50_95": round(figures["map"], 5), "map_50": round(figures["map_50"], 5),
                "detections_per_image": round(float(np.mean([len(d) for d in found])), 3),
                "objects_per_image": round(float(np.mean(truth)), 3) if truth else 0.0}

    def picture(self, image: np.ndarray, original: Any, shipped: Any,
                labels: list[str]) -> str | None:
        from export.task_pictures import detection_picture

        spec = self.detection
        return detection_picture(image, detections_of(original, spec)[0],
                                 detections_of(shipped, spec)[0], labels or spec.labels)
