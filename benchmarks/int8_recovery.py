"""int8 recovery: sensitivity, mixed precision and QAT where the peers' default int8 loses.

For each model: ``digit_detector_large`` (``build_detector.py``, COCO mAP@0.5:0.95),
``digit_detector_hybrid`` (the same with two transformer encoder layers, as RT-DETR's
hybrid encoder) and a ViT (``build_large.py --model vit``, top-1), run ``edgekit build``
with the **default recipe and budget** for rpi4 and x86-64 (kept in ``--work``), then, per
profile and per int8 runtime the build ran recovery in (or the int8 file it shipped when
none was needed), time in one round-robin run (1 and n threads) and score on the whole
validation split in the file's runtime:

- fp32 (the original model);
- the peers' default int8 (ORT ``quantize_static`` QDQ after ``quant_pre_process``;
  litert-torch PT2E);
- edgekit's full int8 (the recovered candidate's student and method, every weighted layer
  int8, the output tail float: ``compress/float_tail.py``);
- the recovery candidate (mixed precision or QAT): the shipped one when it is one, else
  the fastest within tolerance, else the most accurate.

Target: the recovery candidate within 1 point of fp32 while keeping >= 80 % of full
int8's speed-up over fp32 (its speed-up over fp32 / full int8's, at 1 thread).

    nice -n 10 .venv/bin/python benchmarks/int8_recovery.py [--model detector|hybrid|vit]
        [--profile rpi4]
        [--work DIR [--measure-only]] [--no-write]
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

from benchmarks import build_detector, build_large  # noqa: E402
from benchmarks.build_digits import (  # noqa: E402
    RUNTIMES,
    accuracy,
    comparison_files,
    time_files,
    verdict,
)
from benchmarks.results_file import write_section  # noqa: E402

PROFILES = ("rpi4", "x86-64")
MAX_DROP_POINTS = 1.0
MIN_SPEEDUP_KEPT = 0.8
Score = Callable[[str, Path, dict], float]


@dataclass
class Subject:
    """One benchmarked model: how to get its build, its original, data and metric."""

    title: str
    metric: str
    build: Callable[[Path, list[str], float | None], dict[str, Any]]
    teacher_and_data: Callable[[], tuple[Any, dict[str, Any]]]
    score: Score
    baseline: Callable[[Any, dict[str, Any]], float]


def detector() -> Subject:
    """``digit_detector_large`` with cached weights."""
    weights, _ = build_detector.cached_weights(build_detector.EPOCHS)
    return Subject("digit_detector_large (YOLOv8-style, 1x96x96)", "mAP@0.5:0.95",
                   lambda work, profiles, budget: build_detector.run_default_build(
                       weights, profiles, work, budget),
                   lambda: build_detector.teacher_and_data(weights), build_detector.file_map,
                   build_detector.torch_map)


def hybrid() -> Subject:
    """``digit_detector_hybrid`` (two transformer encoder layers over the stride-16 map, as
    RT-DETR's hybrid encoder) with cached weights."""
    name = "digit_detector_hybrid"
    weights, _ = build_detector.cached_weights(build_detector.EPOCHS, name)
    return Subject(f"{name} (conv + attention, YOLOv8-style, 1x96x96)", "mAP@0.5:0.95",
                   lambda work, profiles, budget: build_detector.run_default_build(
                       weights, profiles, work, budget, name),
                   lambda: build_detector.teacher_and_data(weights, name),
                   build_detector.file_map, build_detector.torch_map)


def vit() -> Subject:
    """The ViT of ``build_large.MODELS['vit']`` with cached weights."""
    spec = build_large.MODELS["vit"]
    weights, top1 = build_large.cached_baseline("vit", quick=False)

    def build(work: Path, profiles: list[str], budget: float | None) -> dict[str, Any]:
        build_large.run_default_build(spec, weights, profiles, work, budget)
        return json.loads((work / "out" / "report.json").read_text())

    return Subject(spec.title + ", 3x64x64", "top-1", build,
                   lambda: build_large.teacher_and_data(spec, weights), accuracy,
                   lambda teacher, data: top1)


SUBJECTS: dict[str, Callable[[], Subject]] = {"detector": detector, "hybrid": hybrid,
                                              "vit": vit}


def recovery_pairs(profile: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any] | None,
                                                          dict[str, Any]]]:
    """Per recovery run: (full int8 candidate, the recovery candidate or None, the run)."""
    by_id = {c["id"]: c for c in profile["candidates"]}
    pairs = []
    for run in profile.get("mixed_precision") or []:
        full = by_id.get(run["candidate"])
        tried = [by_id[t["id"]] for t in run.get("tried", []) if t["id"] in by_id
                 and by_id[t["id"]].get("file")]
        if full is None or not full.get("file"):
            continue
        pairs.append((full, pick(tried), run))
    return pairs


def pick(tried: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The shipped candidate, else the fastest within tolerance, else the most accurate."""
    for status in ("chosen", "passed"):
        hits = [c for c in tried if c["status"] == status and c.get("latency_ms")]
        if hits:
            return min(hits, key=lambda c: c["latency_ms"])
    measured = [c for c in tried if c.get("metric") is not None]
    return max(measured, key=lambda c: c["metric"]) if measured else None


def what(c: dict[str, Any]) -> str:
    """How a recovery candidate reads: QAT, n layers in float, or both."""
    parts = (["QAT"] if c.get("variant") == "qat" else []) + (
        [f"{len(c['keep_float'])} layer{'s' if len(c['keep_float']) > 1 else ''} in float"]
        if c.get("keep_float") else [])
    return " + ".join(parts) or "int8"


def measure(name: str, full: dict[str, Any], rec: dict[str, Any] | None, teacher: Any,
            data: dict[str, Any], score: Score, folder: Path) -> dict[str, Any]:
    """fp32, peer int8, full int8 and the recovery file, timed together and scored."""
    from export.latency import host_threads
    from hardware_profiles import get_profile

    target = next(t for t in get_profile(name).targets
                  if (t.format, t.precision) == (full["format"], "int8"))
    folder.mkdir(parents=True, exist_ok=True)
    files = {**comparison_files(target, teacher, data, folder),
             f"edgekit full int8 ({full['id']})": Path(full["file"])}
    if rec is not None:
        files[f"edgekit {what(rec)} ({rec['id']}, {rec['status']})"] = Path(rec["file"])
    ms = time_files(full["format"], files, target, data)
    threads = host_threads(target.threads)
    rows = [{"label": label, "ms_1": ms[(label, 1)], "ms_n": ms[(label, threads)],
             "metric": score(full["format"], path, data), "size": path.stat().st_size}
            for label, path in files.items()]
    return {"format": full["format"], "threads": threads, "rows": rows}


def verdicts(m: dict[str, Any], baseline: float) -> dict[str, Any]:
    """The recovery row's drop (points) and the share of full int8's speed-up it keeps."""
    fp32, _, full, *rec = m["rows"]
    if not rec:
        return {}
    r = rec[0]
    drop = (baseline - r["metric"]) * 100
    kept = (fp32["ms_1"] / r["ms_1"]) / (fp32["ms_1"] / full["ms_1"])
    return {"drop": drop, "kept": kept, "ok": drop <= MAX_DROP_POINTS and
            kept >= MIN_SPEEDUP_KEPT}


def table(name: str, m: dict[str, Any], baseline: float, metric: str) -> list[str]:
    """One profile and runtime: every file's latency and metric, then the verdicts."""
    n = m["threads"]
    lines = [f"#### {name}: {RUNTIMES[m['format']]}, 1 and {n} threads", "",
             f"| file | ms (1 thread) | ms ({n} threads) | size kB | {metric} | drop (points) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['ms_1']:.3f} | {r['ms_n']:.3f} | {r['size'] / 1e3:.0f} | "
              f"{r['metric']:.4f} | {(baseline - r['metric']) * 100:+.2f} |" for r in m["rows"]]
    v = verdicts(m, baseline)
    if v:
        lines += ["", f"- recovery: **{v['drop']:+.2f} points** vs the original (target <= "
                  f"{MAX_DROP_POINTS:g}: {verdict(v['drop'] <= MAX_DROP_POINTS)}); keeps "
                  f"**{100 * v['kept']:.0f} %** of full int8's 1-thread speed-up over fp32 "
                  f"(target >= {100 * MIN_SPEEDUP_KEPT:.0f} %: "
                  f"{verdict(v['kept'] >= MIN_SPEEDUP_KEPT)})"]
    else:
        lines += ["", "- recovery: no mixed or QAT file was measured (see the run below)"]
    return lines


def run_line(run: dict[str, Any]) -> str:
    """What one recovery run did, from report.json."""
    sens = run.get("sensitivity") or {}
    qat = run.get("qat") or {}
    parts = [f"trigger: {run.get('trigger')}"]
    if sens:
        parts.append(f"ranked {len(sens.get('layers', []))} layers in {sens.get('seconds')} s "
                     f"({len(sens.get('unranked', []))} unranked), sizes tried "
                     f"{run.get('sizes_tried')}, stopped: {run.get('stopped')}")
    why = f" (ran because {qat['why']})" if qat.get("why") else ""
    if qat.get("history"):
        history = ", ".join(f"{h['metric']:.4f}" for h in qat.get("history", []))
        short = f", {qat['shortened']}" if qat.get("shortened") else ""
        parts.append(f"QAT{why}: {qat.get('epochs_run')} epochs in {qat.get('seconds')} s"
                     f"{short} (fake-quantized metric per epoch {history})")
    if qat.get("skipped"):
        parts.append(f"QAT{why if not qat.get('history') else ''}: no candidate: "
                     f"{qat['skipped']}")
    return f"- `{run['candidate']}`: " + "; ".join(parts)


def model_section(key: str, args: argparse.Namespace, work: Path) -> str:
    """Build (or reuse), measure and describe one model."""
    started = time.monotonic()
    subject = SUBJECTS[key]()
    report_file = work / "out" / "report.json"
    if not (args.measure_only and report_file.exists()):
        subject.build(work, args.profile or list(PROFILES), args.time_budget)
    report = json.loads(report_file.read_text())
    teacher, data = subject.teacher_and_data()
    baseline = subject.baseline(teacher, data)
    lines = [f"### {subject.title}", "",
             f"Original in torch: {subject.metric} **{baseline:.4f}**. Default recipe, "
             f"build {report['duration_s']:.0f} s. " + build_large.search_line(report), ""]
    for name, profile in report["profiles"].items():
        chosen = next((c["id"] for c in profile["candidates"] if c["status"] == "chosen"),
                      "nothing")
        lines += [f"**{name}** ships `{chosen}`.", ""]
        pairs = recovery_pairs(profile)
        shipped = next((c for c in profile["candidates"] if c["status"] == "chosen"
                        and c["precision"] == "int8" and c.get("file")), None)
        if not pairs:
            lines += ["No int8 recovery ran: every int8 file was within its floor, or none "
                      "was measured.", ""]
        if shipped is not None and shipped["format"] not in {f["format"] for f, _, _ in pairs}:
            # the peers beside the int8 file it ships, in a runtime that needed no recovery
            m = measure(name, shipped, None, teacher, data, subject.score,
                        work / "compare" / name / shipped["format"])
            drop = (baseline - m["rows"][2]["metric"]) * 100
            lines += [*table(name, m, baseline, subject.metric)[:-1],
                      f"- shipped full int8: **{drop:+.2f} points** vs the original (target <= "
                      f"{MAX_DROP_POINTS:g}: {verdict(drop <= MAX_DROP_POINTS)}), all of its "
                      "own speed-up", ""]
        for full, rec, run in pairs:
            m = measure(name, full, rec, teacher, data, subject.score,
                        work / "compare" / name / full["format"])
            lines += [*table(name, m, baseline, subject.metric), run_line(run), ""]
    lines.append(f"Time for this model: {time.monotonic() - started:.0f} s.")
    return "\n".join(lines)


def doc_text() -> str:
    """This module's description for RESULTS.md: what is measured, the rows, the target."""
    paragraph, rows, target = __doc__.split("\n\n")[1:4]
    return "\n\n".join([paragraph.replace("\n", " "),
                        rows.replace("\n  ", " "), target.replace("\n", " ")])


def main() -> None:
    """Each model; write (or with --no-write print) the RESULTS.md section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=sorted(SUBJECTS))
    parser.add_argument("--profile", action="append", help=f"default: {', '.join(PROFILES)}")
    parser.add_argument("--time-budget", type=float, help="default: the build's own")
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS")
    parser.add_argument("--work", type=Path, help="keep each model's build in WORK/<model>")
    parser.add_argument("--measure-only", action="store_true",
                        help="time the builds an earlier --work run left (build the others)")
    args = parser.parse_args()
    if args.measure_only and not args.work:
        parser.error("--measure-only needs --work DIR (the folder of the earlier run)")
    from compress import progress

    progress.enable()
    sections = []
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-recovery-") as tmp:
        for key in args.model or list(SUBJECTS):
            work = (args.work or Path(tmp)) / key
            sections.append(model_section(key, args, work))
    body = "\n\n".join(["## int8 recovery: sensitivity, mixed precision, QAT",
                        "`benchmarks/int8_recovery.py` (issue 20). " + doc_text(), *sections])
    print(body)
    if not args.no_write:
        write_section("int8-recovery", body)


if __name__ == "__main__":
    main()
