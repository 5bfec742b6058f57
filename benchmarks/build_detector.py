"""The build pipeline on an object detector: ``digit_detector_large`` (1x96x96, YOLOv8 layout).

Trains ``examples/digit_boxes/models.py:digit_detector_large`` (weights cached in
``benchmarks/.cache/``), runs ``edgekit build`` with the **default recipe and budget** for
rpi4 and x86-64, then times fp32, the peer default int8 (ONNX Runtime ``quantize_static``
QDQ per-channel after ``quant_pre_process``; litert-torch PT2E symmetric per-channel) and
the chosen file round-robin in one run, 1 and 2 threads (``build_digits.measure_runtime``).
Every file is scored by COCO mAP@0.5:0.95 (pycocotools) on the whole validation split in
its own runtime, so the peers' mAP stands beside their speed. Targets: >= 3x vs fp32,
>= 1.5x vs the peer default, <= 1 mAP point drop.

    nice -n 10 .venv/bin/python benchmarks/build_detector.py [--profile rpi4] [--quick]
        [--work DIR [--measure-only]]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.build_digits import Targets, runtime_table  # noqa: E402
from benchmarks.build_large import (  # noqa: E402
    contention_note,
    measure_profiles,
    search_line,
    summary_row,
)
from benchmarks.results_file import write_section  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
MODELS = "examples/digit_boxes/models.py"
LARGE = "digit_detector_large"
DATA = "examples/digit_boxes/data.py:data"
PROFILES = ("rpi4", "x86-64")
TARGETS = Targets(vs_fp32=3.0, vs_peer=1.5, drop=0.01, metric="mAP@0.5:0.95")
EPOCHS, QUICK_EPOCHS = 8, 1
QUICK_BUDGET_S = 120.0
MIN_BASELINE_MAP = 0.7


def cached_weights(epochs: int, name: str = LARGE) -> tuple[Path, dict[str, float]]:
    """The trained detector's weights (trained once, then read from the cache) and its
    validation mAP in torch; ``name`` is a factory of ``examples/digit_boxes/models.py``."""
    import torch

    from compress import progress
    from examples.digit_boxes import models
    from examples.digit_boxes.data import loaders
    from examples.digit_boxes.train import evaluate_map, train

    weights = CACHE / f"{name}-e{epochs}.pt"
    info = weights.with_suffix(".json")
    if not (weights.exists() and info.exists()):
        started = time.monotonic()
        torch.manual_seed(0)
        data = loaders(seed=0)
        model = train(getattr(models, name)(), data, epochs, seed=0)
        scores = evaluate_map(model, *data["validation"].dataset.tensors)
        CACHE.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), weights)
        info.write_text(json.dumps({**scores, "train_s": time.monotonic() - started}))
    facts = json.loads(info.read_text())
    progress.note(f"{name}: validation mAP@0.5:0.95 {facts['map']:.4f}, "
                  f"mAP@0.5 {facts['map_50']:.4f} ({weights.name})")
    if facts["map"] < MIN_BASELINE_MAP and epochs == EPOCHS:
        raise SystemExit(f"the detector reached only mAP {facts['map']:.3f}; delete {weights} "
                         "and train longer (EPOCHS)")
    return weights, facts


def run_default_build(weights: Path, profiles: list[str], work: Path,
                      time_budget: float | None, name: str = LARGE) -> dict[str, Any]:
    """``edgekit build`` with the default recipe (recipe=None), keeping every candidate."""
    from edge_agent.bundle import generate_keypair
    from export.build import BuildRequest, run_build

    private, _ = generate_keypair(work / "keys")
    budget = {"time_budget_s": time_budget} if time_budget else {}
    run_build(BuildRequest(
        model=f"{MODELS}:{name}", weights=weights, data=DATA, profiles=profiles, key_file=private,
        out_dir=work / "out", recipe=None, name="digit-boxes", version="1",
        artifacts_dir=work / "artifacts", **budget))
    return json.loads((work / "out" / "report.json").read_text())


def teacher_and_data(weights: Path, name: str = LARGE) -> tuple[Any, dict[str, Any]]:
    """The trained original, the validation / calibration tensors and the detection spec."""
    from compress.evaluation import collect
    from compress.usercode import build_model
    from edge_agent.contracts.task import Task
    from examples.digit_boxes.data import TASK, loaders

    parts = loaders()
    val_x, val_y = collect(parts["validation"])
    return build_model(f"{MODELS}:{name}", weights), {
        "val_x": val_x, "val_y": val_y, "example": val_x[:1].clone(),
        "calibration": collect(parts["calibration"], limit=256)[0],
        "spec": Task.from_dict(TASK).detection}


def file_map(fmt: str, path: Path, data: dict[str, Any]) -> float:
    """COCO mAP@0.5:0.95 of an exported file on the validation split, in its runtime, with
    the device's post-processing (``edge_agent.tasks``)."""
    from compress.tasks.detection import mean_average_precision
    from export.runner import ExportedModel

    outputs = ExportedModel(fmt, path, {"threads": 1}).predict(data["val_x"].numpy())
    return mean_average_precision(outputs, data["val_y"], data["spec"])["map"]


def torch_map(teacher: Any, data: dict[str, Any]) -> float:
    """The original model's mAP@0.5:0.95, scored exactly as the files are."""
    from compress.evaluation import predict
    from compress.tasks.detection import mean_average_precision

    return mean_average_precision(predict(teacher, data["val_x"], batch=64), data["val_y"],
                                  data["spec"])["map"]


def section(report: dict[str, Any], measured: dict[str, dict[str, Any]],
            facts: dict[str, Any]) -> str:
    """The RESULTS.md section."""
    baseline = facts["torch_map"]
    rows = [summary_row(name, m, baseline, TARGETS) for name, m in measured.items()]
    fp32_ms = min(m["rows"][0]["ms_1"] for m in measured.values())
    peers = "; ".join(f"{name}: {m['rows'][1]['label']} mAP {m['rows'][1]['accuracy']:.4f} "
                      f"({(baseline - m['rows'][1]['accuracy']) * 100:+.2f} points drop)"
                      for name, m in measured.items())
    lines = [
        f"`benchmarks/build_detector.py`: `digit_detector_large` (YOLOv8-style anchor-free "
        f"detector, 1x96x96, 10 classes; `examples/digit_boxes`) on {facts['val_n']} "
        f"validation canvases, trained {facts['epochs']} epochs ({facts['train_s']:.0f} s). "
        f"Original model in torch: mAP@0.5:0.95 **{baseline:.4f}** (mAP@0.5 "
        f"{facts['map_50']:.4f}). Built with the **default recipe** and {facts['budget']}: "
        f"build {report['duration_s']:.0f} s for {len(report['profiles'])} profiles. "
        "mAP of every file is pycocotools' COCOeval over the device's own post-processing "
        "(score floor 0.001), in the file's runtime. Timing as in the digits section (one "
        "round-robin run per table; threads capped at this host's cores).", "",
        f"fp32 at 1 thread: {fp32_ms:.2f} ms (>= 5 ms: {'yes' if fp32_ms >= 5 else '**no**'}).",
        "", "| profile | chosen | fp32 ms (1 thread) | vs fp32 (1 / n threads) | "
        "vs peer int8 (1 / n) | mAP drop (points) |", "|---|---|---|---|---|---|",
        *(row for row, _ in rows), "",
        f"All targets met on {sum(ok for _, ok in rows)} of {len(rows)} profiles "
        f"(>= {TARGETS.vs_fp32:g}x vs fp32, >= {TARGETS.vs_peer:g}x vs the peer default int8, "
        f"<= {100 * TARGETS.drop:g} mAP point drop).", "",
        f"Peers' default int8 accuracy: {peers}.", "",
        *contention_note(measured), search_line(report), ""]
    for name, m in measured.items():
        lines += [f"### digit_detector_large: {name}", "",
                  runtime_table(name, m, baseline, TARGETS), ""]
    lines.append(f"Total benchmark time: {facts['total_s']:.0f} s.")
    return "\n".join(lines)


def main() -> None:
    """Train (or load), build, measure; write (or with --quick / --no-write print) the
    RESULTS.md section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="append", help=f"default: {', '.join(PROFILES)}")
    parser.add_argument("--time-budget", type=float, help="the build's time budget (s); "
                        "default: the build's own")
    parser.add_argument("--quick", action="store_true", help=f"sanity run: {QUICK_EPOCHS} "
                        f"training epoch, x86-64 only, a {QUICK_BUDGET_S:g} s build budget, "
                        "print only")
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS")
    parser.add_argument("--work", type=Path, help="keep the build (report, candidates, "
                        "comparison files) in WORK instead of a temp dir")
    parser.add_argument("--measure-only", action="store_true", help="time the build an "
                        "earlier --work run left (e.g. again, on a quieter host)")
    args = parser.parse_args()
    if args.measure_only and not args.work:
        parser.error("--measure-only needs --work DIR (the folder of the earlier run)")
    if args.quick:
        args.profile, args.no_write = args.profile or ["x86-64"], True
        args.time_budget = args.time_budget or QUICK_BUDGET_S
    from compress import progress

    progress.enable()
    started = time.monotonic()
    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    weights, trained = cached_weights(epochs)
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-detector-") as tmp:
        work = args.work or Path(tmp)
        if args.measure_only:
            report = json.loads((work / "out" / "report.json").read_text())
        else:
            report = run_default_build(weights, args.profile or list(PROFILES), work,
                                       args.time_budget)
        teacher, data = teacher_and_data(weights)
        measured = measure_profiles(report, teacher, data, work, file_map)
        baseline = torch_map(teacher, data)
    budget = (f"`--time-budget {args.time_budget:g}`" if args.time_budget
              else "the default time budget")
    body = section(report, measured, {
        "torch_map": baseline, "map_50": trained["map_50"], "train_s": trained["train_s"],
        "epochs": epochs, "val_n": len(data["val_y"]), "budget": budget,
        "total_s": time.monotonic() - started})
    print(body, flush=True)
    if not args.no_write:
        write_section("build-pipeline-detector",
                      "## Build pipeline on an object detector: digit_detector_large\n\n"
                      + body)


if __name__ == "__main__":
    main()
