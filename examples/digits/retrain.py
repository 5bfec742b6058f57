"""A retraining pipeline for digits, run by a trigger's command action:

    {"kind": "command", "command": "python -m examples.digits.retrain --config retrain.json"}

``edgekit cloud serve`` runs it with the trigger in its environment
(``EDGEKIT_SAMPLES``: the .npz of samples the devices sent home; ``EDGEKIT_MODEL``,
``EDGEKIT_VERSION``, ``EDGEKIT_TRIGGER_ID``). It

1. labels the collected samples (``labels``: a JSON map from an input's sha256 to its
   label; the stand-in for your annotation step: people labelling what came home),
2. trains the next version from scratch on the original training digits plus augmented
   copies (``augment``) plus the labelled samples (repeated ``sample_weight`` times),
   holding out a gate split the training never sees,
3. runs ``edgekit build`` for every profile (the honest gate on the held-out digits, old
   and augmented), ``edgekit cloud publish`` for each bundle, and
4. starts a canary rollout with ``edgekit rollout start``.

Every step is a real command a user could run by hand; ``result.json`` in the output
folder says what each did. Exit status 0 only when the rollout was started.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


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
    arch: str = "small_cnn"
    epochs: int | None = None
    augment: list[str] = field(default_factory=lambda: ["polarity", "noise"])
    sample_weight: int = 2
    gate_fraction: float = 0.2
    tolerance: str = "0.01"
    time_budget_s: float | None = None
    canary: str = "1"
    bake_s: float = 15.0
    waves: str = "100"

    @classmethod
    def load(cls, path: Path) -> RetrainConfig:
        doc = json.loads(Path(path).read_text())
        for key in ("labels", "out", "key", "token_file"):
            doc[key] = Path(doc[key])
        return cls(**doc)


def next_version(version: str) -> str:
    """'1' -> '2'; '1.4' -> '1.5'."""
    head, _, last = version.rpartition(".")
    return f"{head}.{int(last) + 1}" if head else str(int(last) + 1)


def labelled_samples(samples: Path | None, labels: Path) -> tuple[torch.Tensor, torch.Tensor,
                                                                 dict[str, int]]:
    """The collected samples that have a label, as (inputs, labels), with counts."""
    from edgekit.demo.stream import input_key

    empty = (torch.empty(0, 1, 32, 32), torch.empty(0, dtype=torch.long))
    if samples is None or not samples.is_file():
        return (*empty, {"collected": 0, "labelled": 0})
    arrays = np.load(samples)
    known = json.loads(labels.read_text()) if labels.is_file() else {}
    xs, ys = [], []
    for x in arrays["inputs"]:
        label = known.get(input_key(x))
        if label is not None:
            xs.append(np.asarray(x, np.float32).reshape(1, 32, 32))
            ys.append(label)
    counts = {"collected": len(arrays["inputs"]), "labelled": len(ys)}
    if not xs:
        return (*empty, counts)
    return torch.from_numpy(np.stack(xs)), torch.as_tensor(ys, dtype=torch.long), counts


def make_splits(cfg: RetrainConfig, extra: tuple[torch.Tensor, torch.Tensor]
                ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Train (original + augmented + labelled samples), validation and the gate (test):
    held out from the training digits, each with its augmented copies."""
    from examples.digits.augment import augment
    from examples.digits.data import splits

    base = splits()
    x, y = base["train"]
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    n_gate = int(len(y) * cfg.gate_fraction)
    gate, held = order[:n_gate], order[n_gate:]
    n_val = n_gate // 2
    val, train = held[:n_val], held[n_val:]
    train_x, train_y = augment(x[train], y[train], cfg.augment, seed=2)
    if len(extra[1]):
        train_x = torch.cat([train_x, extra[0].repeat(cfg.sample_weight, 1, 1, 1)])
        train_y = torch.cat([train_y, extra[1].repeat(cfg.sample_weight)])
    cal_x, cal_y = base["calibration"]
    return {"train": (train_x, train_y),
            "calibration": augment(cal_x, cal_y, cfg.augment, seed=3),
            "validation": augment(x[val], y[val], cfg.augment, seed=4),
            "test": augment(x[gate], y[gate], cfg.augment, seed=5)}


def run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    """Run one edgekit command; its stdout, or RuntimeError with its last error line."""
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise RuntimeError(f"{what} failed: {lines[-1]}")
    return done.stdout


def edgekit(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgekit.cli.main", *args]


def retrain(cfg: RetrainConfig, env: dict[str, str]) -> dict[str, Any]:
    """The whole pipeline; returns the figures written to result.json."""
    from examples.digits.models import ARCHITECTURES
    from examples.digits.retrain_data import ENV, write
    from examples.digits.train import DEFAULT_EPOCHS, train

    model_name, version = env["EDGEKIT_MODEL"], env["EDGEKIT_VERSION"]
    new = next_version(version)
    work = cfg.out / f"v{new}"
    work.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"trigger": env.get("EDGEKIT_TRIGGER_ID"), "model": model_name,
                           "from_version": version, "version": new}
    started = time.monotonic()
    samples = Path(env["EDGEKIT_SAMPLES"]) if env.get("EDGEKIT_SAMPLES") else None
    extra_x, extra_y, counts = labelled_samples(samples, cfg.labels)
    doc["samples"] = counts
    parts = make_splits(cfg, (extra_x, extra_y))
    data_file = write(work / "data.npz", parts)
    doc["split_sizes"] = {name: len(y) for name, (_, y) in parts.items()}
    print(f"retrain {model_name} v{version} -> v{new}: {counts['labelled']} of "
          f"{counts['collected']} samples labelled; train {doc['split_sizes']['train']}",
          flush=True)

    from examples.digits.retrain_data import data

    os.environ[ENV] = str(data_file)
    torch.manual_seed(0)
    model = ARCHITECTURES[cfg.arch]()
    doc["validation_accuracy"] = round(train(model, cfg.epochs or DEFAULT_EPOCHS[cfg.arch],
                                             data=data()), 4)
    weights = work / f"{cfg.arch}-v{new}.pt"
    torch.save(model.state_dict(), weights)
    doc["train_seconds"] = round(time.monotonic() - started, 1)

    build_env = {**os.environ, ENV: str(data_file), "PYTHONPATH": str(ROOT)}
    build = [*edgekit("build", "--model", f"{ROOT}/examples/digits/models.py:{cfg.arch}",
                      "--weights", str(weights), "--data",
                      f"{ROOT}/examples/digits/retrain_data.py:data", "--key", str(cfg.key),
                      "--out", str(work / "build"), "--name", model_name, "--version", new,
                      "--parent-version", version, "--tolerance", cfg.tolerance,
                      "--no-progress"),
             *[a for p in cfg.profiles for a in ("--profile", p)]]
    if cfg.time_budget_s:
        build += ["--time-budget", f"{cfg.time_budget_s:g}"]
    began = time.monotonic()
    run(build, "edgekit build", build_env)
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
                      # microsecond models on a loaded 2-core host: a canary's p95 swings
                      # by milliseconds of scheduling (seen at 3.8x in CI), not by the model
                      "--max-p95-ratio", "10"),
              "edgekit rollout start")
    doc["rollout"] = json.loads(out)["id"]
    doc["seconds"] = round(time.monotonic() - started, 1)
    print(f"published v{new} ({len(bundles)} bundles), rollout {doc['rollout']} started",
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
