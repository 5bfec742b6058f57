"""A retraining pipeline for the digit-boxes detector, run by a trigger's command action:

    {"kind": "command", "command": "python -m examples.digit_boxes.retrain --config retrain.json"}

``edgekit cloud serve`` runs it with the trigger in its environment (``EDGEKIT_SAMPLES``:
the .npz of frames the devices sent home; ``EDGEKIT_MODEL``, ``EDGEKIT_VERSION``,
``EDGEKIT_TRIGGER_ID``). It

1. labels the collected frames (``labels``: a JSON map from a frame's sha256 to its true
   boxes, rows ``[class, x1, y1, x2, y2]``; the stand-in for an annotation tool, which
   would start from the boxes the device sent with each sample),
2. fine-tunes the deployed version's weights (``weights``) on the labelled frames
   (repeated ``sample_weight`` times) plus ``replay`` of the original training canvases,
   so v2 learns the new conditions without forgetting the old ones; a share of the
   labelled frames (``holdout``) is kept out of training for the gate,
3. runs ``edgekit build`` for every profile (the gate: the held-out labelled frames plus
   original validation canvases), ``edgekit cloud publish`` for each bundle, and
4. starts a canary rollout with ``edgekit rollout start``.

Every step is a real command a user could run by hand; ``result.json`` in the output
folder says what each did. Exit status 0 only when the rollout was started.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.digit_boxes.data import MAX_DIGITS  # noqa: E402
from examples.digits.retrain import edgekit, next_version, run  # noqa: E402


@dataclass
class RetrainConfig:
    """The pipeline's settings (a JSON file; paths absolute)."""

    labels: Path
    out: Path
    key: Path
    api: str
    token_file: Path
    fleet: str
    profiles: list[str]
    weights: Path
    arch: str = "digit_detector"
    epochs: int = 3
    lr: float = 1e-3
    sample_weight: int = 2
    replay: int = 300
    holdout: float = 0.2
    recipe: Path | None = ROOT / "examples" / "digit_boxes" / "recipe-demo.yaml"
    tolerance: str = "0.01"
    time_budget_s: float | None = None
    canary: str = "1"
    bake_s: float = 15.0
    waves: str = "100"

    @classmethod
    def load(cls, path: Path) -> RetrainConfig:
        doc = json.loads(Path(path).read_text())
        for key in ("labels", "out", "key", "token_file", "weights", "recipe"):
            if doc.get(key) is not None:
                doc[key] = Path(doc[key])
        return cls(**doc)


def padded(rows: list[list[float]]) -> np.ndarray:
    """True boxes as the data set's padded label block ``[MAX_DIGITS, 5]`` (class -1 pads)."""
    block = np.zeros((MAX_DIGITS, 5), np.float32)
    block[:, 0] = -1
    for i, row in enumerate(rows[:MAX_DIGITS]):
        block[i] = row
    return block


def labelled_frames(samples: Path | None, labels: Path) -> tuple[torch.Tensor, torch.Tensor,
                                                                 dict[str, int]]:
    """The collected frames that have a label, once each, as (inputs, padded labels)."""
    from edgekit.demo.stream import input_key

    empty = (torch.empty(0, 1, 96, 96), torch.empty(0, MAX_DIGITS, 5))
    if samples is None or not samples.is_file():
        return (*empty, {"collected": 0, "labelled": 0})
    inputs = np.load(samples)["inputs"]
    known = json.loads(labels.read_text()) if labels.is_file() else {}
    frames: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for x in inputs:
        key = input_key(x)
        if key in known and key not in frames:
            frames[key] = (np.asarray(x, np.float32).reshape(1, 96, 96), padded(known[key]))
    counts = {"collected": len(inputs), "labelled": len(frames)}
    if not frames:
        return (*empty, counts)
    xs, ys = zip(*frames.values(), strict=True)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)), counts


def make_splits(cfg: RetrainConfig, frames: tuple[torch.Tensor, torch.Tensor]
                ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Train (labelled frames repeated + replayed original canvases), calibration (original
    and labelled), and the gate (validation = test: held-out labelled frames + original
    validation canvases)."""
    from examples.digit_boxes.data import splits

    base = splits()
    x, y = frames
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    n_hold = round(len(y) * cfg.holdout)
    hold, fit = order[:n_hold], order[n_hold:]
    train_x = torch.cat([x[fit].repeat(cfg.sample_weight, 1, 1, 1), base["train"][0][:cfg.replay]])
    train_y = torch.cat([y[fit].repeat(cfg.sample_weight, 1, 1), base["train"][1][:cfg.replay]])
    cal_x = torch.cat([base["calibration"][0][:128], x[fit][:128]])
    cal_y = torch.cat([base["calibration"][1][:128], y[fit][:128]])
    gate = (torch.cat([x[hold], base["validation"][0][:200]]),
            torch.cat([y[hold], base["validation"][1][:200]]))
    return {"train": (train_x, train_y), "calibration": (cal_x, cal_y),
            "validation": gate, "test": gate, "holdout": (x[hold], y[hold])}


def fine_tune(cfg: RetrainConfig, parts: dict[str, tuple[torch.Tensor, torch.Tensor]]
              ) -> tuple[torch.nn.Module, dict[str, float]]:
    """The deployed weights fine-tuned on the train split; mAP@0.5 on the held-out labelled
    frames and on the whole gate."""
    from torch.utils.data import DataLoader, TensorDataset

    from examples.digit_boxes.models import digit_detector
    from examples.digit_boxes.train import evaluate_map, train

    model = digit_detector()
    model.load_state_dict(torch.load(cfg.weights, weights_only=True))
    loader = DataLoader(TensorDataset(*parts["train"]), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    print(f"fine-tuning {cfg.weights.name}: {cfg.epochs} epochs of {len(loader)} batches",
          flush=True)
    train(model, {"train": loader}, cfg.epochs, lr=cfg.lr)
    figures = {"validation_map50": round(evaluate_map(model, *parts["validation"])["map_50"], 4)}
    if len(parts["holdout"][1]):
        figures["holdout_map50"] = round(evaluate_map(model, *parts["holdout"])["map_50"], 4)
    return model, figures


def build_publish_rollout(cfg: RetrainConfig, doc: dict[str, Any], work: Path, weights: Path,
                          data_file: Path) -> None:
    """``edgekit build`` for every profile, ``cloud publish`` each bundle, ``rollout start``."""
    from examples.digit_boxes.retrain_data import ENV

    model_name, version, new = doc["model"], doc["from_version"], doc["version"]
    build = [*edgekit("build", "--model", f"{ROOT}/examples/digit_boxes/models.py:{cfg.arch}",
                      "--weights", str(weights), "--data",
                      f"{ROOT}/examples/digit_boxes/retrain_data.py:data", "--key", str(cfg.key),
                      "--out", str(work / "build"), "--name", model_name, "--version", new,
                      "--parent-version", version, "--tolerance", cfg.tolerance,
                      "--no-progress"),
             *[a for p in cfg.profiles for a in ("--profile", p)]]
    if cfg.recipe:
        build += ["--recipe", str(cfg.recipe)]
    if cfg.time_budget_s:
        build += ["--time-budget", f"{cfg.time_budget_s:g}"]
    began = time.monotonic()
    run(build, "edgekit build", {**os.environ, ENV: str(data_file), "PYTHONPATH": str(ROOT)})
    doc["build_seconds"] = round(time.monotonic() - began, 1)
    doc["build_report"] = str(work / "build" / "report.json")
    token = cfg.token_file.read_text().strip()
    bundles = sorted((work / "build").rglob("*.ekb"))
    for bundle in bundles:
        run(edgekit("cloud", "publish", str(bundle), "--api", cfg.api, "--token", token),
            f"edgekit cloud publish {bundle.name}")
    doc["bundles"] = [str(b.relative_to(work / "build")) for b in bundles]  # profile/file
    out = run(edgekit("rollout", "start", "--model", model_name, "--version", new,
                      "--fleet", cfg.fleet, "--canary", cfg.canary, "--bake", f"{cfg.bake_s:g}",
                      "--waves", cfg.waves, "--api", cfg.api, "--token", token, "--json",
                      # sub-millisecond models on a loaded 2-core host: a canary's p95
                      # swings by scheduling noise, not by the model
                      "--max-p95-ratio", "10"),
              "edgekit rollout start")
    doc["rollout"] = json.loads(out)["id"]


def retrain(cfg: RetrainConfig, env: dict[str, str]) -> dict[str, Any]:
    """The whole pipeline; returns the figures written to result.json."""
    from examples.digit_boxes.retrain_data import write

    version = env["EDGEKIT_VERSION"]
    new = next_version(version)
    work = cfg.out / f"v{new}"
    work.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"trigger": env.get("EDGEKIT_TRIGGER_ID"),
                           "model": env["EDGEKIT_MODEL"], "from_version": version, "version": new}
    started = time.monotonic()
    samples = Path(env["EDGEKIT_SAMPLES"]) if env.get("EDGEKIT_SAMPLES") else None
    x, y, doc["samples"] = labelled_frames(samples, cfg.labels)
    if not len(y):
        raise ValueError(f"no labelled frames among the {doc['samples']['collected']} samples")
    parts = make_splits(cfg, (x, y))
    doc["split_sizes"] = {name: len(t[1]) for name, t in parts.items()}
    print(f"retrain {doc['model']} v{version} -> v{new}: {doc['samples']['labelled']} of "
          f"{doc['samples']['collected']} frames labelled; train {doc['split_sizes']['train']}",
          flush=True)
    torch.manual_seed(0)
    model, figures = fine_tune(cfg, parts)
    doc.update(figures)
    weights = work / f"{cfg.arch}-v{new}.pt"
    torch.save(model.state_dict(), weights)
    doc["train_seconds"] = round(time.monotonic() - started, 1)
    data_file = write(work / "data.npz", {k: v for k, v in parts.items() if k != "holdout"})
    build_publish_rollout(cfg, doc, work, weights, data_file)
    doc["seconds"] = round(time.monotonic() - started, 1)
    print(f"published v{new} ({len(doc['bundles'])} bundles), rollout {doc['rollout']} started",
          flush=True)
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args()
    cfg = RetrainConfig.load(args.config)
    result = cfg.out / "result.json"
    try:
        doc = retrain(cfg, dict(os.environ))
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        cfg.out.mkdir(parents=True, exist_ok=True)
        result.write_text(json.dumps({"error": str(exc)}, indent=2))
        print(f"retrain: {exc}", file=sys.stderr)
        sys.exit(1)
    result.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
