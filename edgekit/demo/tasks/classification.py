"""``classification``: the digits classifier of ``make demo`` (``examples/digits``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgekit.demo.settings import DemoSettings
from edgekit.demo.stream import Observation, Pools, accuracy, post_npy
from edgekit.demo.tasks.base import Answer, BuildSpec, DemoTask, Line, register


def probabilities(outputs: np.ndarray) -> np.ndarray:
    """Class probabilities from a model output (softmax unless it already is one)."""
    out = np.asarray(outputs, dtype=np.float64).reshape(-1)
    if np.all(out >= 0) and abs(out.sum() - 1.0) < 1e-3:
        return out
    e = np.exp(out - out.max())
    return e / e.sum()


@register
class Classification(DemoTask):
    """Scikit-learn's digits, a small CNN, accuracy as the figure of merit."""

    name = "classification"
    model_name = "digits"
    metric, metric_label, build_metric_label = "accuracy", "accuracy", "accuracy"
    default_arch, archs = "small_cnn", ("small_cnn", "mobilenetv2")
    default_shift, shifts = "invert", ("invert", "rotate", "noise")
    retrain_module = "examples.digits.retrain"
    traffic = "classify held-out digits"
    lines = (Line("accuracy", "#1a9850", "metric"), Line("confidence", "#377eb8", "confidence"))
    sizes: ClassVar[dict[str, dict[str, Any]]] = {
        "full": {},
        "small": {"epochs": 4, "retrain_epochs": 6, "baseline_s": 25.0, "build_budget_s": 45.0,
                  "bake_s": 8.0, "recovery_s": 15.0, "min_recovered": 0.8},
    }

    def train(self, s: DemoSettings, fig: dict[str, Any]) -> tuple[Path, str]:
        from examples.digits.train import DEFAULT_EPOCHS, train_baseline

        epochs = s.epochs or DEFAULT_EPOCHS[s.arch]
        weights = s.out / f"{s.arch}-e{epochs}.pt"
        meta = weights.with_suffix(".json")
        if weights.is_file() and meta.is_file():
            fig.update(json.loads(meta.read_text()), cached=True)
        else:
            _, acc = train_baseline(s.arch, weights, epochs)
            fig.update(validation_accuracy=round(acc, 4), epochs=epochs, cached=False)
            meta.write_text(json.dumps({"validation_accuracy": fig["validation_accuracy"],
                                        "epochs": epochs}))
        return weights, f"{s.arch} baseline: validation accuracy {fig['validation_accuracy']:.4f}"

    def build_spec(self, s: DemoSettings, root: Path) -> BuildSpec:
        return BuildSpec(model=f"{root}/examples/digits/models.py:{s.arch}",
                         data=f"{root}/examples/digits/data.py:data")

    def pools(self, s: DemoSettings) -> Pools:
        from examples.digits.data import MEAN, STD, splits

        x, y = (t.numpy() for t in splits()["validation"])
        half = len(y) // 2  # digits before the rollout; fresh digits to measure recovery
        return Pools({"stream": (x[:half], y[:half].tolist()),
                      "fresh": (x[half:], y[half:].tolist())}, s.shift, MEAN, STD)

    def ask(self, port: int, x: Any) -> Answer:
        doc = post_npy(port, x)
        probs = probabilities(np.asarray(doc["outputs"][0]))
        return Answer(int(probs.argmax()), float(probs.max()), str(doc["model"]["version"]))

    def score(self, observations: list[Observation]) -> float | None:
        return accuracy(observations)

    def retrain_settings(self, s: DemoSettings, weights: Path) -> dict[str, Any]:
        return {"arch": s.arch, "epochs": s.retrain_epochs}
