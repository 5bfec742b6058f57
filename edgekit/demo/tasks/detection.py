"""``detection``: the digit-boxes detector (``examples/digit_boxes``), mAP@0.5 as the figure
of merit.

The streams send 96x96 canvases of digits the detector never trained on; the demo keeps
each frame's true boxes (its labelling stand-in) and scores the devices' detections with
pycocotools' COCO evaluation (``compress.tasks.detection.coco_map``, what the build
reports). The ``stream`` frames paste one half of the held-out digit images, the
``fresh`` frames that measure recovery the other half: never sent before the rollout,
never labelled, never trained on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgekit.demo.settings import DemoSettings
from edgekit.demo.stream import Observation, Pools, post_npy
from edgekit.demo.tasks.base import Answer, BuildSpec, DemoTask, Line, register
from edgekit.demo.tasks.frames import example_sections, pick_example
from edgekit.demo.tasks.parse import answer_detections, detection_spec

STREAM_FRAMES, FRESH_FRAMES = 400, 300
TOLERANCE = "0.03"  # int8 costs the detector about two mAP@0.5:0.95 points on the gate


def truth_rows(labels: np.ndarray) -> list[list[float]]:
    """The real rows ``[class, x1, y1, x2, y2]`` of a padded label block (class -1 dropped)."""
    return [[float(v) for v in row] for row in np.asarray(labels).reshape(-1, 5) if row[0] >= 0]


def frame_pools(shift: str, seed: int = 7000) -> Pools:
    """``stream`` and ``fresh`` canvases of the held-out digit images (one half each)."""
    from sklearn.datasets import load_digits

    from examples.digit_boxes.data import MEAN, STD, digit_indices, make_canvases, normalize

    images, classes = load_digits(return_X_y=True)
    held_out = digit_indices()["validation"]
    half = len(held_out) // 2
    pools = {}
    for i, (name, idx, count) in enumerate((("stream", held_out[:half], STREAM_FRAMES),
                                            ("fresh", held_out[half:], FRESH_FRAMES))):
        x, y = make_canvases(count, images[idx], classes[idx], seed + i)
        pools[name] = (normalize(x).numpy(), [truth_rows(lab) for lab in y.numpy()])
    return Pools(pools, shift, MEAN, STD)


def map50(observations: list[Observation]) -> float | None:
    """COCO mAP@0.5 of the observations' detections against their true boxes."""
    from compress.tasks.detection import coco_map

    if not observations:
        return None
    found = [o.answer for o in observations]
    truth = [np.asarray(o.truth, np.float64).reshape(-1, 5) for o in observations]
    return coco_map(found, truth, detection_spec().num_classes)["map_50"]


@register
class Detection(DemoTask):
    """Digits pasted into 96x96 canvases, a 0.41 M-parameter YOLOv8-style detector."""

    name = "detection"
    model_name = "digit-boxes"
    metric, metric_label, build_metric_label = "map50", "mAP@0.5", "mAP@0.5:0.95"
    default_arch, archs = "digit_detector", ("digit_detector",)
    default_shift, shifts = "dim", ("dim", "noise")
    retrain_module = "examples.digit_boxes.retrain"
    traffic = "detect digits in held-out frames"
    lines = (Line("mAP@0.5", "#1a9850", "metric"), Line("top score", "#377eb8", "confidence"))
    bucket_s = 15.0       # ~150 frames per device and bucket for each COCO evaluation
    sizes: ClassVar[dict[str, dict[str, Any]]] = {
        "full": {"epochs": 12, "retrain_epochs": 3, "baseline_s": 30.0,
                 "build_budget_s": 60.0, "bake_s": 10.0, "recovery_s": 25.0,
                 "retrain_timeout_s": 600.0,
                 "min_recovered": 0.8, "recovered_share": 0.8},
        "small": {"epochs": 8, "retrain_epochs": 3, "baseline_s": 25.0,
                  "build_budget_s": 40.0, "bake_s": 8.0, "recovery_s": 20.0,
                  "retrain_timeout_s": 600.0,
                  "min_recovered": 0.8, "recovered_share": 0.8},
    }

    def train(self, s: DemoSettings, fig: dict[str, Any]) -> tuple[Path, str]:
        weights = s.out / f"{s.arch}-e{s.epochs}.pt"
        meta = weights.with_suffix(".json")
        if weights.is_file() and meta.is_file():
            fig.update(json.loads(meta.read_text()), cached=True)
        else:
            fig.update(train_detector(weights, s.epochs), cached=False)
            meta.write_text(json.dumps({k: v for k, v in fig.items() if k != "cached"}))
        return weights, (f"{s.arch} baseline: validation mAP@0.5 {fig['validation_map50']:.4f}, "
                         f"mAP@0.5:0.95 {fig['validation_map']:.4f}")

    def build_spec(self, s: DemoSettings, root: Path) -> BuildSpec:
        here = f"{root}/examples/digit_boxes"
        return BuildSpec(model=f"{here}/models.py:{s.arch}", data=f"{here}/data.py:data",
                         recipe=Path(f"{here}/recipe-demo.yaml"), tolerance=TOLERANCE)

    def pools(self, s: DemoSettings) -> Pools:
        return frame_pools(s.shift)

    def ask(self, port: int, x: Any) -> Answer:
        doc = post_npy(port, x)
        found = answer_detections(doc)
        top = float(found.scores.max()) if len(found) else 0.0
        return Answer(found, top, str(doc["model"]["version"]))

    def score(self, observations: list[Observation]) -> float | None:
        return map50(observations)

    def agent_settings(self) -> dict[str, Any]:
        # a detector's sample confidence is its best box's score: dimmed frames fall under
        return {"telemetry_interval_s": 1.0, "sample_rate_per_min": 240.0,
                "low_confidence": 0.8}

    def retrain_settings(self, s: DemoSettings, weights: Path) -> dict[str, Any]:
        return {"weights": str(weights), "epochs": s.retrain_epochs, "tolerance": TOLERANCE}

    def snapshot(self, demo: Any, phase: str) -> None:
        pick_example(demo, phase)

    def report_sections(self, demo: Any) -> list[str]:
        return example_sections(demo)


def train_detector(weights: Path, epochs: int) -> dict[str, Any]:
    """Train the small detector; its validation figures."""
    import torch

    from examples.digit_boxes.data import loaders
    from examples.digit_boxes.models import digit_detector
    from examples.digit_boxes.train import evaluate_map, train

    data = loaders()
    torch.manual_seed(0)
    model = train(digit_detector(), data, epochs)
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), weights)
    scores = evaluate_map(model, *data["validation"].dataset.tensors)
    return {"validation_map50": round(scores["map_50"], 4),
            "validation_map": round(scores["map"], 4), "epochs": epochs}
