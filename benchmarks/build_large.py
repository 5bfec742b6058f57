"""The build pipeline at realistic sizes: MobileNetV2-1.0 (3x288x288) and ResNet-18 (3x128x128).

``build_digits.py`` at 32x32 runs models of a few tenths of a millisecond, where
runtime overhead flatters speed-up ratios. Here both models take >= 5 ms in fp32 at
one thread on the benchmark host. For each: train the baseline on digits upsampled
(``examples/digits/large.py``; weights cached in ``benchmarks/.cache/``), run
``edgekit build`` with the **default recipe** for rpi4, jetson-orin-nano and x86-64,
then time fp32, the peer default int8 and the chosen file round-robin in one run
(``build_digits.measure_runtime``), and write one RESULTS.md section per model with
the targets (>= 4x vs fp32, >= 1.7x vs the peer default, <= 1.0 point drop) and the
chosen file's int8 GMAC/s against this host's int8 GEMM peak (``int8_peak.py``).

    nice -n 10 .venv/bin/python benchmarks/build_large.py [--model resnet18] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.build_digits import (  # noqa: E402
    CLASSIFIER_TARGETS,
    PROFILES,
    Targets,
    accuracy,
    best_per_format,
    measure_runtime,
    runtime_table,
    verdict,
)
from benchmarks.results_file import write_section  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
LARGE = "examples/digits/large.py"
MIN_BASELINE_ACCURACY = 0.95
MIN_FP32_MS = 5.0


@dataclass(frozen=True)
class LargeModel:
    """One benchmarked network: its factory, its data function and how to train it.

    ``schedule`` is (image size, epochs) phases under one learning-rate cycle: most
    epochs at a small size, the last at the benchmark size (progressive resizing; the
    nets are fully convolutional, so the weights carry over).
    """

    title: str
    factory: str
    size: int
    schedule: tuple[tuple[int, int], ...]
    module: str = LARGE  # the file defining the factory and ``data_<size>``
    lr: float = 4e-3  # the one-cycle schedule's peak

    @property
    def model_spec(self) -> str:
        """``--model`` for the build."""
        return f"{self.module}:{self.factory}"

    @property
    def data_spec(self) -> str:
        """``--data`` for the build."""
        return f"{self.module}:data_{self.size}"


MODELS = {
    "mobilenetv2": LargeModel("MobileNetV2-1.0", "mobilenetv2_large", 288,
                              ((144, 8), (288, 2))),
    "resnet18": LargeModel("ResNet-18", "resnet18_large", 128, ((64, 4), (128, 2))),
    # attention: one size only (its positions are learnt for 64 tokens)
    "vit": LargeModel("ViT (10 layers, width 256, 8x8 patches)", "vit_small", 64, ((64, 24),),
                      module="examples/digits/attention.py", lr=1e-3),
}
QUICK_SCHEDULE = ((64, 1), (128, 1))
QUICK_BUDGET_S = 120.0


def quick_schedule(spec: LargeModel) -> tuple[tuple[int, int], ...]:
    """One epoch per phase, small sizes for the resizable nets, the one size otherwise."""
    if len(spec.schedule) == 1:
        return ((spec.schedule[0][0], 1),)
    return QUICK_SCHEDULE


def train_large(spec: LargeModel, schedule: tuple[tuple[int, int], ...],
                seed: int = 0) -> tuple[Any, float]:
    """A freshly trained network and its validation accuracy at the benchmark size."""
    import torch
    import torch.nn.functional as F

    from compress import progress
    from compress.evaluation import collect, predict, top1_accuracy
    from compress.usercode import build_model
    from examples.digits.large import large_loaders

    torch.manual_seed(seed)
    net = build_model(spec.model_spec).to(memory_format=torch.channels_last)
    phases = [(large_loaders(size, seed=seed)["train"], size, epochs)
              for size, epochs in schedule]
    optimizer = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=1e-4)
    cycle = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=spec.lr, total_steps=sum(len(ld) * n for ld, _, n in phases))
    for loader, size, epochs in phases:
        for epoch in range(epochs):
            net.train()
            for x, y in progress.track(loader, f"{spec.title} {size}px epoch {epoch + 1}/"
                                       f"{epochs}", total=len(loader)):
                optimizer.zero_grad()
                F.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)), y,
                                label_smoothing=0.05).backward()
                optimizer.step()
                cycle.step()
    val_x, val_y = collect(large_loaders(spec.size, seed=seed)["validation"])
    return net.to(memory_format=torch.contiguous_format), top1_accuracy(
        predict(net, val_x, batch=64), val_y)


def cached_baseline(key: str, quick: bool) -> tuple[Path, float]:
    """The trained weights of ``MODELS[key]`` (trained once, then read from the cache)."""
    import torch

    from compress import progress

    spec = MODELS[key]
    schedule = quick_schedule(spec) if quick else spec.schedule
    tag = "-".join(f"{s}x{n}" for s, n in schedule)
    weights = CACHE / f"{spec.factory}-{tag}.pt"
    info = weights.with_suffix(".json")
    if not (weights.exists() and info.exists()):
        started = time.monotonic()
        net, acc = train_large(spec, schedule)
        CACHE.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), weights)
        info.write_text(json.dumps({"accuracy": acc, "train_s": time.monotonic() - started}))
    acc = json.loads(info.read_text())["accuracy"]
    progress.note(f"{spec.title}: baseline validation accuracy {acc:.4f} ({weights.name})")
    if acc <= MIN_BASELINE_ACCURACY and not quick:
        raise SystemExit(f"{spec.title} reached only {acc:.4f} validation accuracy; delete "
                         f"{weights} and train longer (schedule in MODELS)")
    return weights, acc


def run_default_build(spec: LargeModel, weights: Path, profiles: list[str], work: Path,
                      time_budget: float | None) -> Any:
    """``edgekit build`` with the default recipe (recipe=None), keeping every candidate."""
    from edge_agent.bundle import generate_keypair
    from export.build import BuildRequest, run_build

    private, _ = generate_keypair(work / "keys")
    budget = {"time_budget_s": time_budget} if time_budget else {}
    return run_build(BuildRequest(
        model=spec.model_spec, weights=weights, data=spec.data_spec, profiles=profiles,
        key_file=private, out_dir=work / "out", recipe=None, name=spec.factory.replace("_", "-"),
        version="1", artifacts_dir=work / "artifacts", **budget))


def teacher_and_data(spec: LargeModel, weights: Path) -> tuple[Any, dict[str, Any]]:
    """The trained original and the validation / calibration tensors, as build_digits wants."""
    from compress.evaluation import collect
    from compress.usercode import build_model
    from examples.digits.large import large_loaders

    parts = large_loaders(spec.size)
    val_x, val_y = collect(parts["validation"])
    return build_model(spec.model_spec, weights), {
        "val_x": val_x, "val_y": val_y, "example": val_x[:1].clone(),
        "calibration": collect(parts["calibration"], limit=256)[0]}


def chosen_macs(report: dict[str, Any], ratio: float, teacher: Any, example: Any) -> float:
    """MACs of the chosen candidate's network: its student's (from the report), or the
    original's for ratio 0."""
    from compress.prune import count_macs

    student = next((s for s in report.get("students", []) if s.get("key") == f"r{ratio:g}"), {})
    if "macs_after" in (student.get("prune") or {}):
        return float(student["prune"]["macs_after"])
    if ratio:
        raise SystemExit(f"the build report lists no MACs for the r{ratio:g} student; its "
                         "'students' block changed: update chosen_macs")
    return count_macs(teacher, example)


def measure_profiles(report: dict[str, Any], teacher: Any, data: dict[str, Any],
                     work: Path, score: Callable[[str, Path, dict], float] = accuracy,
                     ) -> dict[str, dict[str, Any]]:
    """Each profile's chosen runtime timed against fp32 and the peer default, together
    (``score``: each file's metric, as ``build_digits.measure_runtime`` takes it).

    Profiles whose chosen file, format and (capped) threads are the same share one
    measurement: the files and the timing would be identical.
    """
    from compress import progress

    measured: dict[str, dict[str, Any]] = {}
    seen: dict[tuple, dict[str, Any]] = {}
    for name, profile in report["profiles"].items():
        best = next((c for c in best_per_format(profile).values() if c["status"] == "chosen"),
                    None)
        if best is None:
            progress.note(f"{name}: no candidate chosen, nothing to measure")
            continue
        key = (best["file"], best["format"], best.get("threads"))
        if key not in seen:
            seen[key] = measure_runtime(name, best, teacher, data, work / "compare" / name,
                                        score)
        measured[name] = {**seen[key], "best": best, "macs": chosen_macs(
            report, best["prune_ratio"], teacher, data["example"]),
            "profile_threads": _profile_threads(name, best)}
    return measured


def _profile_threads(name: str, best: dict[str, Any]) -> int:
    """The thread count this profile's target gives the chosen file (a shared measurement
    carries the first profile's)."""
    from hardware_profiles import get_profile

    return next(t.threads for t in get_profile(name).targets
                if (t.format, t.precision) == (best["format"], best["precision"]))


def ratios(m: dict[str, Any]) -> dict[str, float]:
    """Speed-ups of the chosen file (1 thread and n threads) and its accuracy drop."""
    fp32, peer, ours = m["rows"]
    return {"fp32_1": fp32["ms_1"] / ours["ms_1"], "fp32_n": fp32["ms_n"] / ours["ms_n"],
            "peer_1": peer["ms_1"] / ours["ms_1"], "peer_n": peer["ms_n"] / ours["ms_n"]}


def summary_row(name: str, m: dict[str, Any], baseline: float,
                targets: Targets = CLASSIFIER_TARGETS) -> tuple[str, bool]:
    """One profile's line of the summary table, and whether all three targets are met."""
    fp32, _, ours = m["rows"]
    r = ratios(m)
    drop = (baseline - ours["accuracy"]) * 100
    checks = (min(r["fp32_1"], r["fp32_n"]) >= targets.vs_fp32,
              min(r["peer_1"], r["peer_n"]) >= targets.vs_peer, drop <= 100 * targets.drop)
    best = m["best"]
    return (f"| {name} | {m['format']} r{best['prune_ratio']:g} {best['precision']} "
            f"({best['method']}) | {fp32['ms_1']:.2f} | {r['fp32_1']:.2f}x / {r['fp32_n']:.2f}x "
            f"({verdict(checks[0])}) | {r['peer_1']:.2f}x / {r['peer_n']:.2f}x "
            f"({verdict(checks[1])}) | {drop:.2f} ({verdict(checks[2])}) |", all(checks))


def throughput_line(m: dict[str, Any], peak: float) -> str:
    """Achieved GMAC/s of the chosen file at one thread, against the host's int8 peak."""
    ours, best, macs = m["rows"][2], m["best"], m["macs"]
    achieved = macs / (ours["ms_1"] / 1e3) / 1e9
    return (f"{macs / 1e6:.0f}M MACs in {ours['ms_1']:.3f} ms = **{achieved:.1f} GMAC/s** at "
            f"1 thread ({best['precision']}), **{100 * achieved / peak:.1f} %** of the host's "
            f"int8 GEMM peak ({peak:.0f} GMAC/s)")


LONGER = {"distil longer": " distilled longer"}


def search_line(report: dict[str, Any]) -> str:
    """What the default recipe's prune search tried, why it stopped, where the time went."""
    search = report.get("search", {})
    trials = ", ".join(f"r{t['ratio']:g}{LONGER.get(t.get('step'), '')} {t['verdict']} "
                       f"({t['metric']:.4f}, {t['seconds']:.0f} s)"
                       for t in search.get("trials", []))
    budget = search.get("budget", {})
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in budget.get("phases_s", {}).items())
    return (f"Prune search ({search.get('mode', '?')}): {trials or 'no trials listed'}; "
            f"stopped: {search.get('stop') or 'done'}. Time budget {budget.get('budget_s', 0):.0f}"
            f" s, used {budget.get('used_s', 0):.0f} s ({phases}).")


def contention_note(measured: dict[str, dict[str, Any]]) -> list[str]:
    """A warning when multi-threaded runs were slower than single-threaded ones (load from
    other processes on the host's few cores), which inflates the n-thread ratios."""
    slow = [n for n, m in measured.items() if m["rows"][0]["ms_n"] > m["rows"][0]["ms_1"]]
    if not slow:
        return []
    return [f"Note: fp32 ran slower at {next(iter(measured.values()))['threads']} threads "
            f"than at 1 on {', '.join(slow)}: other processes were loading this shared "
            "host's cores, which hits multi-threaded runs hardest, so the n-thread ratios "
            "there are inflated; the 1-thread ratios are the ones to trust.", ""]


def model_section(key: str, report: dict[str, Any], measured: dict[str, dict[str, Any]],
                  peak: float, facts: dict[str, Any]) -> str:
    """The RESULTS.md section of one model."""
    spec = MODELS[key]
    baseline = facts["accuracy"]  # the original model on the whole validation set, in torch
    rows = [summary_row(name, m, baseline) for name, m in measured.items()]
    fp32_ms = min(m["rows"][0]["ms_1"] for m in measured.values())
    lines = [
        f"`benchmarks/build_large.py`: {spec.title} on digits upsampled to "
        f"3x{spec.size}x{spec.size} (validation set: {facts['val_n']} images; baseline "
        f"{facts['accuracy']:.4f}, trained {facts['schedule']}), built with the **default "
        f"recipe** and {facts['budget']}: build {report['duration_s']:.0f} s for "
        f"{len(report['profiles'])} profiles. "
        "Timing as in the digits section (one round-robin run per table; threads capped at "
        "this host's cores).", "",
        f"fp32 at 1 thread: {fp32_ms:.2f} ms (>= {MIN_FP32_MS:g} ms: "
        f"{'yes' if fp32_ms >= MIN_FP32_MS else '**no**'}).", "",
        "| profile | chosen | fp32 ms (1 thread) | vs fp32 (1 / n threads) | "
        "vs peer int8 (1 / n) | drop (points) |", "|---|---|---|---|---|---|",
        *(row for row, _ in rows), "",
        f"All targets met on {sum(ok for _, ok in rows)} of {len(rows)} profiles.", "",
        *contention_note(measured), search_line(report), ""]
    for name, m in measured.items():
        lines += [f"### {spec.title}: {name}", "", runtime_table(name, m, baseline),
                  "- " + throughput_line(m, peak), ""]
    lines.append(f"Total benchmark time for this model: {facts['total_s']:.0f} s.")
    return "\n".join(lines)


def build_or_reuse(spec: LargeModel, weights: Path, args: argparse.Namespace,
                   work: Path) -> dict[str, Any]:
    """The build report: a fresh default-recipe build in ``work``, or (``--measure-only``)
    the one an earlier run left there."""
    report_file = work / "out" / "report.json"
    if not args.measure_only:
        run_default_build(spec, weights, args.profile or list(PROFILES), work, args.time_budget)
    if not report_file.exists():
        raise SystemExit(f"{report_file} does not exist; run without --measure-only first")
    return json.loads(report_file.read_text())


def run_model(key: str, args: argparse.Namespace, peak: float) -> str:
    """Train (or load), build, measure and describe one model."""
    started = time.monotonic()
    spec = MODELS[key]
    weights, accuracy = cached_baseline(key, args.quick)
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-large-") as tmp:
        work = args.work / key if args.work else Path(tmp)
        report = build_or_reuse(spec, weights, args, work)
        teacher, data = teacher_and_data(spec, weights)
        measured = measure_profiles(report, teacher, data, work)
    schedule = ", ".join(f"{n} epochs at {s}px" for s, n in
                         (quick_schedule(spec) if args.quick else spec.schedule))
    budget = (f"`--time-budget {args.time_budget:g}`" if args.time_budget
              else "the default time budget")
    facts = {"val_n": len(data["val_y"]), "accuracy": accuracy, "schedule": schedule,
             "total_s": time.monotonic() - started, "budget": budget}
    return model_section(key, report, measured, peak, facts)


def main() -> None:
    """Benchmark each model; write (or with --quick / --no-write print) its section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=sorted(MODELS),
                        help="default: all")
    parser.add_argument("--profile", action="append", help=f"default: {', '.join(PROFILES)}")
    parser.add_argument("--time-budget", type=float, help="the build's time budget (s); "
                        "default: the build's own")
    parser.add_argument("--quick", action="store_true", help="sanity run: 2 training epochs, "
                        f"x86-64 only, a {QUICK_BUDGET_S:g} s build budget, print only")
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS")
    parser.add_argument("--work", type=Path, help="keep each model's build (report, "
                        "candidates, comparison files) in WORK/<model> instead of a temp dir")
    parser.add_argument("--measure-only", action="store_true", help="measure the builds an "
                        "earlier --work run left (after a failed measurement)")
    args = parser.parse_args()
    if args.measure_only and not args.work:
        parser.error("--measure-only needs --work DIR (the folder of the earlier run)")
    if args.quick:
        args.profile, args.no_write = args.profile or ["x86-64"], True
        args.time_budget = args.time_budget or QUICK_BUDGET_S
    from benchmarks.int8_peak import int8_peak
    from compress import progress

    progress.enable()
    peak = int8_peak()["peak"]
    progress.note(f"host int8 GEMM peak: {peak:.0f} GMAC/s at 1 thread")
    for key in args.model or list(MODELS):
        body = run_model(key, args, peak)
        print(body, flush=True)
        if not args.no_write:
            write_section(f"build-pipeline-large-{key}",
                          f"## Build pipeline at a realistic size: {MODELS[key].title}\n\n"
                          + body)


if __name__ == "__main__":
    main()
