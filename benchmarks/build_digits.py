"""The build pipeline on digits: what ``edgekit build`` chooses vs fp32 and vs the peer default.

For the MobileNetV2-style model on rpi4, jetson-orin-nano and x86-64: train the
baseline, run the build with ``examples/digits/recipe-benchmark.yaml``, then time in
one round-robin run per runtime, with 1 thread and with the profile's thread count
(capped at this host's cores):

- the fp32 baseline (the original model exported to that format),
- the peer default int8 (the original model through ``quantize_static`` with its
  defaults, or litert-torch PT2E with its default config),
- the file ``edgekit build`` chose (in the chosen runtime), or the fastest candidate
  within tolerance (in the profile's other runtime).

Targets: chosen >= 4x faster than fp32, >= 1.7x faster than the peer default,
accuracy drop <= 1.0 point.

    .venv/bin/python benchmarks/build_digits.py [--weights W.pt] [--profile P ...]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_file import write_section  # noqa: E402

PROFILES = ("rpi4", "jetson-orin-nano", "x86-64")
RECIPE = ROOT / "examples" / "digits" / "recipe-benchmark.yaml"
PEER = {"onnx": "ort-peer-default", "tflite": "litert-peer-default"}
TARGET_VS_FP32, TARGET_VS_PEER, TARGET_DROP = 4.0, 1.7, 0.01


@dataclass(frozen=True)
class Targets:
    """A benchmark's bars: speed-up vs fp32 and vs the peer default int8, the largest
    metric drop (a fraction: 0.01 = one point), and what the metric is called."""

    vs_fp32: float = TARGET_VS_FP32
    vs_peer: float = TARGET_VS_PEER
    drop: float = TARGET_DROP
    metric: str = "accuracy"


CLASSIFIER_TARGETS = Targets()


def build(work: Path, weights: Path, profiles: list[str]) -> Any:
    """Run ``edgekit build`` (the library call), keeping every candidate's file."""
    from edge_agent.bundle import generate_keypair
    from export.build import BuildRequest, run_build

    private, _ = generate_keypair(work / "keys")
    return run_build(BuildRequest(
        model="examples/digits/models.py:mobilenetv2", weights=weights,
        data="examples/digits/data.py:data", profiles=profiles, key_file=private,
        out_dir=work / "out", recipe=RECIPE, name="digits", version="1",
        artifacts_dir=work / "artifacts"))


def comparison_files(target: Any, teacher: Any, data: dict, folder: Path) -> dict[str, Path]:
    """fp32 baseline and peer default int8 of the original model, in the target's format."""
    from export.registry import QUANTIZERS, QuantizeJob, exporter_for

    fmt = target.format
    exporter = exporter_for(fmt)
    fp32 = exporter.export(teacher, data["example"], target.model_copy(update={
        "precision": "fp32"}), folder / f"fp32{exporter.suffix}")
    job = QuantizeJob(model=teacher, example=data["example"], calibration=data["calibration"],
                      target=target.model_copy(update={"precision": "int8"}), workdir=folder,
                      fp32_file=lambda: fp32)
    peer = QUANTIZERS.get((fmt, "int8", PEER[fmt])).run(job, folder / f"peer{exporter.suffix}")
    return {"fp32 baseline": fp32, f"peer default int8 ({PEER[fmt]})": peer}


def accuracy(fmt: str, path: Path, data: dict) -> float:
    """Top-1 accuracy of a file on the validation set, in its runtime."""
    from export.runner import ExportedModel

    outputs = ExportedModel(fmt, path, {"threads": 1}).predict(data["val_x"].numpy())
    return float((outputs.argmax(1) == data["val_y"].numpy()).mean())


def time_files(fmt: str, files: dict[str, Path], target: Any, data: dict) -> dict[tuple, float]:
    """Latency of every file with 1 thread and the profile's (capped) threads, together."""
    from export.latency import Timing, benchmark, host_threads

    threads = host_threads(target.threads)
    timings = [Timing.of((label, n), fmt, path, {**target.runtime_options(), "threads": n})
               for label, path in files.items() for n in dict.fromkeys((1, threads))]
    return benchmark(timings, data["example"].numpy(), runs=600, warmup=50, rounds=6)


def best_per_format(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The chosen candidate for its format, and the fastest passing one for each other format."""
    passing = [c for c in profile["candidates"] if c["status"] in ("chosen", "passed")]
    best: dict[str, dict[str, Any]] = {}
    for c in sorted(passing, key=lambda c: (c["status"] != "chosen", c["latency_ms"])):
        best.setdefault(c["format"], c)
    return best


def measure_runtime(name: str, best: dict[str, Any], teacher: Any, data: dict,
                    folder: Path, score: Callable[[str, Path, dict], float] = accuracy,
                    ) -> dict[str, Any]:
    """fp32 baseline, peer default and edgekit's file in one runtime, timed together;
    ``score(format, file, data)`` gives each file's metric (``accuracy``: top-1)."""
    from export.latency import host_threads
    from hardware_profiles import get_profile

    target = next(t for t in get_profile(name).targets
                  if (t.format, t.precision) == (best["format"], best["precision"]))
    folder.mkdir(parents=True, exist_ok=True)
    files = comparison_files(target, teacher, data, folder)
    files[f"edgekit build: r{best['prune_ratio']:g} {best['precision']} ({best['method']})"] \
        = Path(best["file"])
    ms = time_files(best["format"], files, target, data)
    threads = host_threads(target.threads)
    rows = [{"label": label, "size": path.stat().st_size,
             "accuracy": score(best["format"], path, data),
             "ms_1": ms[(label, 1)], "ms_n": ms[(label, threads)]}
            for label, path in files.items()]
    return {"format": best["format"], "chosen": best["status"] == "chosen",
            "threads": threads, "profile_threads": target.threads, "rows": rows}


def load_teacher_and_data(weights: Path) -> tuple[Any, dict]:
    """The trained original model and the data the build used."""
    from compress.evaluation import collect
    from compress.usercode import build_model
    from examples.digits.data import loaders

    teacher = build_model("examples/digits/models.py:mobilenetv2", weights)
    parts = loaders()
    val_x, val_y = collect(parts["validation"])
    calibration, _ = collect(parts["calibration"], limit=256)
    return teacher, {"val_x": val_x, "val_y": val_y, "calibration": calibration,
                     "example": val_x[:1].clone()}


def verdict(ok: bool) -> str:
    """How a target check reads in the results."""
    return "met" if ok else "**missed**"


RUNTIMES = {"onnx": "ONNX Runtime", "tflite": "LiteRT (XNNPACK)"}


def runtime_table(name: str, m: dict[str, Any], baseline_acc: float,
                  targets: Targets = CLASSIFIER_TARGETS) -> str:
    """One runtime's table; the chosen runtime's also checks the targets."""
    rows, n = m["rows"], m["threads"]
    fp32, peer, ours = rows
    role = "chosen" if m["chosen"] else "best candidate in this runtime, not chosen"
    lines = [f"#### {name}: {RUNTIMES[m['format']]} ({role}), 1 thread and {n} threads "
             f"(profile: {m['profile_threads']})", "",
             f"| model | ms (1 thread) | ms ({n} threads) | size kB | {targets.metric} |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['ms_1']:.3f} | {r['ms_n']:.3f} | {r['size'] / 1e3:.0f} | "
              f"{r['accuracy']:.4f} |" for r in rows]
    vs_fp32 = [fp32[k] / ours[k] for k in ("ms_1", "ms_n")]
    vs_peer = [peer[k] / ours[k] for k in ("ms_1", "ms_n")]
    drop = (baseline_acc - ours["accuracy"]) * 100
    lines += ["", f"- vs fp32: **{vs_fp32[0]:.2f}x** (1 thread), **{vs_fp32[1]:.2f}x** "
              f"({n} threads)" + (f" — target >= {targets.vs_fp32:g}x: "
                                   f"{verdict(min(vs_fp32) >= targets.vs_fp32)}"
                                   if m["chosen"] else ""),
              f"- vs peer default int8: **{vs_peer[0]:.2f}x** / **{vs_peer[1]:.2f}x**"
              + (f" — target >= {targets.vs_peer:g}x: "
                 f"{verdict(min(vs_peer) >= targets.vs_peer)}"
                 if m["chosen"] else ""),
              f"- {targets.metric} drop vs the original model: **{drop:.2f} points**"
              + (f" — target <= {100 * targets.drop:g}: {verdict(drop <= 100 * targets.drop)}"
                 if m["chosen"] else ""),
              f"- size: {fp32['size'] / ours['size']:.1f}x smaller than fp32", ""]
    return "\n".join(lines)


def search_notes(report: dict[str, Any]) -> str:
    """What the search tried: students, INC vs ORT's own quantizer, build time."""
    lines = [f"Build: {report['duration_s']:.0f} s for {len(report['profiles'])} profiles "
             f"(recipe `examples/digits/recipe-benchmark.yaml`), baseline accuracy "
             f"{report['baseline_metric']:.4f}.", "",
             "| student | MACs | params | distilled accuracy | epochs |", "|---|---|---|---|---|"]
    for s in report["students"]:
        p, d = s.get("prune", {}), s.get("distill", {})
        macs = f"{p['macs_after'] / 1e6:.2f}M" if p else "(original)"
        params = f"{p['params_after'] / 1e3:.0f}k" if p else "-"
        lines.append(f"| {s['key']} | {macs} | {params} | {d.get('best_metric', '-')} | "
                     f"{d.get('epochs_run', '-')} |")
    x86 = report["profiles"].get("x86-64", next(iter(report["profiles"].values())))
    inc = {c["prune_ratio"]: c for c in x86["candidates"] if c["method"] == "inc"}
    ort = {c["prune_ratio"]: c for c in x86["candidates"] if c["method"] == "ort-static"}
    if inc:
        lines += ["", "neural-compressor (INC) vs ORT's own int8 quantizer, same student, "
                  "ONNX Runtime, 1 thread (x86-64 search; passed = within tolerance but "
                  "slower than the chosen file):", "",
                  "| ratio | INC ms | ORT static ms | INC kB | ORT kB | INC verdict |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r:g} | {inc[r]['latency_ms_1thread']:.3f} | "
                  f"{ort[r]['latency_ms_1thread']:.3f} | {inc[r]['size_bytes'] / 1e3:.0f} | "
                  f"{ort[r]['size_bytes'] / 1e3:.0f} | {inc[r]['status']} |"
                  for r in sorted(inc) if r in ort]
    return "\n".join(lines)


def main() -> None:
    """Train (unless --weights), build, measure, write the RESULTS.md section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="a trained mobilenetv2 state_dict")
    parser.add_argument("--profile", action="append", help="default: rpi4, "
                        "jetson-orin-nano, x86-64")
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS")
    parser.add_argument("--keep", type=Path, help="copy report.json/.html and bundles here")
    args = parser.parse_args()
    from compress import progress
    from examples.digits.train import train_baseline

    progress.enable()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        work = Path(tmp)
        weights = args.weights or train_baseline("mobilenetv2", work / "weights.pt")[0]
        result = build(work, weights, args.profile or list(PROFILES))
        teacher, data = load_teacher_and_data(weights)
        report = result.report
        if args.keep:
            shutil.copytree(work / "out", args.keep, dirs_exist_ok=True)
        sections = []
        for name in result.bundles:
            sections.append(f"### {name}\n")
            best = best_per_format(report["profiles"][name])
            for fmt in sorted(best, key=lambda f: best[f]["status"] != "chosen"):
                measured = measure_runtime(name, best[fmt], teacher, data,
                                           work / "compare" / name / fmt)
                sections.append(runtime_table(name, measured, report["baseline_metric"]))
    body = ("## Build pipeline (digits)\n\n`benchmarks/build_digits.py`: MobileNetV2-style "
            f"net on digits upsampled to 32x32 (validation set: {len(data['val_y'])} images; "
            "accuracy below is measured from each file in its runtime). Each table is "
            "one round-robin run (6 rounds of 100 runs after 50 warm-up; each file's figure is "
            "the median of its best round), so ratios are like for like; the host is shared, "
            "so absolute figures move by 10-20 %. Threads above this host's cores are "
            "capped.\n\n" + "\n".join(sections) + "\n"
            + search_notes(report) + f"\n\nTotal benchmark time: "
            f"{time.monotonic() - started:.0f} s.\n")
    print(body)
    if not args.no_write:
        write_section("build-pipeline-digits", body)


if __name__ == "__main__":
    main()
