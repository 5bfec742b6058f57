"""``edgekit build``: from a trained PyTorch model to one signed bundle per hardware profile.

Once per build: split the data (calibration / selection / gate, ``compress.splits``)
and, with the default recipe, run the adaptive prune search (``compress.adaptive``):
students are pruned further while the distilled one stays within tolerance on the
selection split. Per profile: enumerate candidates (passing ratios x the profile's
targets x quantizer methods x thread counts, as the recipe allows), measure each from
its exported file in its real runtime, time them with the build's latency source (this
host, or the device's agent with ``measure_on``), rank those within tolerance by the
profile's ``host_timing`` policy, confirm the first on the gate split, and write its
bundle. Students and exported files are shared between profiles; the whole search runs
within ``time_budget_s``. The report (JSON + HTML) is written whatever happens; a profile
with no candidate within tolerance gets no bundle and the build ends with a ``BuildError``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compress import progress
from compress.adaptive import RatioSearch, search_ratios
from compress.budget import DEFAULT_TIME_BUDGET_S, Budget
from compress.errors import RecipeError
from compress.evaluation import collect, predict, score
from compress.outputs import take, to_numpy, to_torch
from compress.recipe import Recipe, load_recipe
from compress.search import Candidate, SearchPlan, SearchResult, run_search, student_of
from compress.splits import SelectionAndGate, selection_and_gate
from compress.techniques import Student, StudentData, Students, check_names
from compress.tolerance import Tolerance
from compress.usercode import UserData, build_model, load_data
from edge_agent.bundle import load_private_key
from edge_agent.contracts.build_info import Compression
from export.compose import write_chosen_bundle
from export.errors import BuildError
from export.evaluate import EvalData, Evaluator
from export.inputs import BuildInputs, prepare_inputs
from export.latency import LatencySource, latency_source
from export.lineage import lineage
from export.mixed_precision import MixedPrecision, mixed_section
from export.registry import method_names
from export.report import write_html, write_json
from hardware_profiles import Profile, get_profile

# How each profile's ``host_timing`` ranks candidates timed on this host (an agent's
# figures are the device's own, so they always rank by latency).
HOST_TIMING_SELECTION = {"representative": "fastest", "rank_only": "fastest",
                         "not_representative": "target_order"}
LATENCY_NOTES = {
    "device": "timed on the device itself ({source})",
    "representative": "timed on {source}; host timings stand for this profile",
    "rank_only": "timed on {source}: these figures rank the candidates (same CPU runtimes), "
                 "but the device's own will differ; time on it with --measure-on",
    "not_representative": "timed on {source} for reference only: this device's fast path "
                          "({providers}) does not run on this host, so the candidates within "
                          "tolerance were chosen in the profile's target order, not by "
                          "these timings; time on the device with --measure-on",
}


@dataclass
class BuildRequest:
    """What ``edgekit build`` was asked to do."""

    model: str
    data: str
    profiles: list[str]
    key_file: Path
    out_dir: Path
    weights: Path | None = None
    recipe: Path | Recipe | None = None
    tolerance: str = "0.01"
    name: str | None = None
    version: str = "1"
    parent_version: str | None = None
    profiles_dirs: list[Path] = field(default_factory=list)
    seed: int = 0
    artifacts_dir: Path | None = None  # keep every candidate's file here (default: a temp dir)
    time_budget_s: float = DEFAULT_TIME_BUDGET_S  # the whole search, students to latency
    measure_on: str | None = None  # an agent's URL: time candidates on the device
    measure_token: str | None = None  # that agent's HTTP token


@dataclass
class BuildResult:
    """The report document and the bundles written, by profile."""

    report: dict[str, Any]
    bundles: dict[str, Path]
    report_json: Path
    report_html: Path


def check_methods(recipe: Recipe) -> None:
    """Every quantizer method the recipe names must be registered."""
    known = method_names()
    for method in recipe.quantize.methods:
        if method != "default" and method not in known:
            raise RecipeError(f"recipe field 'quantize.methods': unknown method {method!r}; "
                              f"known: default, {', '.join(known)}")


def _load_recipe(value: Path | Recipe | None) -> Recipe:
    recipe = value if isinstance(value, Recipe) else load_recipe(value)
    check_names(recipe)
    check_methods(recipe)
    return recipe


def references(profile: Profile, recipe: Recipe) -> list[Candidate]:
    """The original model in fp32, once per format the profile (and recipe) allows."""
    refs = []
    for fmt in profile.formats():
        if fmt in recipe.search.formats:
            index, target = next((i, t) for i, t in enumerate(profile.targets)
                                 if t.format == fmt)
            refs.append(Candidate(0.0, index, "float",
                                  target.model_copy(update={"precision": "fp32"})))
    return refs


@dataclass
class Prepared:
    """The build's fixed inputs once split: data for each role, baselines, the students."""

    inputs: BuildInputs
    split: SelectionAndGate
    data: EvalData
    selection_baseline: float
    gate_baseline: float
    allowed: float
    students: Students
    gate_reference: Any = None  # the original model's outputs on the gate split (numpy)


def run_build(req: BuildRequest) -> BuildResult:
    """Run the whole build; raises BuildError (after writing the report) if a profile failed."""
    import torch

    started = time.monotonic()
    check_outputs(req)
    recipe = _load_recipe(req.recipe)
    tolerance = Tolerance.parse(req.tolerance)
    profiles = [get_profile(p, req.profiles_dirs) for p in dict.fromkeys(req.profiles)]
    key = load_private_key(req.key_file)
    budget = Budget(req.time_budget_s)
    source = _source(req, profiles)
    torch.manual_seed(req.seed)
    teacher = build_model(req.model, req.weights)
    user = load_data(req.data)
    prep = prepare(teacher, user, recipe, req, tolerance)
    budget.start()
    budget.reserve(recovery_reserve(recipe, budget.total_s))
    ratios = _student_search(recipe, prep, budget)
    with _workdir(req.artifacts_dir) as work:
        tolerable = prep.allowed / max(abs(prep.selection_baseline), 1e-9)
        evaluator = Evaluator(recipe, prep.data, Path(work), tolerable_loss=tolerable,
                              source=source, budget=budget)
        results = search_profiles(profiles, recipe, prep, ratios, evaluator, budget)
        bundles = _write_bundles(req, results, prep, recipe, key, profiles, source)
        tasks = {name: task_section(r, prep, evaluator) for name, r in results.items()}
    context = ReportContext(req, recipe, tolerance, prep, ratios, budget, source,
                            {p.name: p for p in profiles}, tasks)
    doc = build_report(context, results, bundles, time.monotonic() - started)
    req.out_dir.mkdir(parents=True, exist_ok=True)
    result = BuildResult(doc, bundles, write_json(doc, req.out_dir / "report.json"),
                         write_html(doc, req.out_dir / "report.html"))
    _raise_if_failed(doc, result.report_json)
    return result


def search_profiles(profiles: list[Profile], recipe: Recipe, prep: Prepared,
                    ratios: RatioSearch | None, evaluator: Evaluator,
                    budget: Budget) -> dict[str, SearchResult]:
    """Each profile's search, sharing students and files, each within its share of what is
    left of the budget."""
    results = {}
    for i, profile in enumerate(profiles):
        progress.note(f"profile {profile.name}")
        plan = SearchPlan(ratios=ratios.passing() if ratios else None,
                          selection=selection_for(profile, evaluator.source),
                          final=evaluator.gate_metric, gate_baseline=prep.gate_baseline,
                          budget=budget, share_s=budget.left() / (len(profiles) - i),
                          mixed=mixed_hook(recipe, evaluator, prep.students),
                          reserve_s=budget.reserved_s / (len(profiles) - i))
        results[profile.name] = run_search(profile, recipe, prep.students, evaluator,
                                           prep.selection_baseline, prep.allowed,
                                           references(profile, recipe), plan)
    return results


def recovery_reserve(recipe: Recipe, total_s: float) -> float:
    """Seconds held back for mixed precision and QAT: ``reserve_share`` of the budget when
    the recipe has either on and may quantize to int8, else none."""
    quantize = recipe.quantize
    wanted = _recovers(recipe) and "int8" in quantize.precisions
    return quantize.mixed_precision.reserve_share * total_s if wanted else 0.0


def _recovers(recipe: Recipe) -> bool:
    """Whether the recipe has mixed precision or QAT on."""
    return recipe.quantize.mixed_precision.enabled or recipe.quantize.qat.enabled


def mixed_hook(recipe: Recipe, evaluator: Evaluator,
               students: Students | None = None) -> MixedPrecision | None:
    """The search's mixed-precision (and QAT) hook, unless the recipe turns both off."""
    if not _recovers(recipe):
        return None
    quantize = recipe.quantize
    return MixedPrecision(evaluator, quantize.mixed_precision, students, quantize.qat)


def _source(req: BuildRequest, profiles: list[Profile]) -> LatencySource:
    """This host, or the agent named by ``measure_on`` (asked who it is before any work)."""
    if req.measure_on and len(profiles) > 1:
        raise BuildError(f"--measure-on times on one device, but {len(profiles)} profiles were "
                         "given; build one --profile per --measure-on agent")
    source = latency_source(req.measure_on, req.measure_token)
    wanted = profiles[0].name
    if source.device_profile not in (None, wanted):
        raise BuildError(f"the agent at {req.measure_on} runs profile "
                         f"{source.device_profile!r}, not {wanted!r}; build --profile "
                         f"{source.device_profile} or measure on an agent of {wanted}")
    return source


def selection_for(profile: Profile, source: LatencySource) -> str:
    """The ``SELECTIONS`` policy for a profile: by latency unless the figures are host
    timings that do not stand for the device."""
    return "fastest" if source.on_device else HOST_TIMING_SELECTION[profile.host_timing]


def prepare(teacher: Any, user: UserData, recipe: Recipe, req: BuildRequest,
            tolerance: Tolerance) -> Prepared:
    """Collect the data, split validation into selection and gate, score both baselines."""
    inputs = prepare_inputs(teacher, user, recipe, req.model, req.weights)
    full = inputs.data
    test = collect(user.test) if user.test is not None else None
    split = selection_and_gate(full.val_x, full.val_y, test, req.seed)
    sel_x, sel_y = full.val_x[split.selection], full.val_y[split.selection]
    data = EvalData(example=full.example, calibration=full.calibration, val_x=sel_x,
                    val_y=sel_y, reference=take(full.reference, split.selection.numpy()),
                    metric=full.metric, gate_x=split.gate_x, gate_y=split.gate_y,
                    task=inputs.task)
    selection_baseline = score(full.metric, to_torch(data.reference), sel_y)
    gate_outputs = predict(teacher, split.gate_x)
    gate_baseline = score(full.metric, gate_outputs, split.gate_y)
    allowed = tolerance.allowed_drop(selection_baseline)
    progress.note(f"baseline {inputs.metric_name}: {selection_baseline:.4f} on the selection "
                  f"split ({len(sel_y)}), {gate_baseline:.4f} on the gate split "
                  f"({len(split.gate_y)}); allowed drop {allowed:.4f} ({tolerance.describe()})")
    students = Students(recipe, StudentData(teacher, full.example, inputs.train, (sel_x, sel_y),
                                            full.metric, req.seed,
                                            loss=inputs.task.distill_loss))
    return Prepared(inputs, split, data, selection_baseline, gate_baseline, allowed, students,
                    to_numpy(gate_outputs))


def _student_search(recipe: Recipe, prep: Prepared, budget: Budget) -> RatioSearch | None:
    """The adaptive prune search (None for a hand-written ratio list, whose students are
    made here so their time counts as distillation)."""
    if not recipe.prune.adaptive_search:
        with budget.phase("distill"):
            for ratio in recipe.prune.candidate_ratios():
                prep.students.get(ratio)
        return None
    data = prep.data

    def judge(student: Student) -> float:
        return score(data.metric, predict(student.model, data.val_x), data.val_y)

    return search_ratios(recipe.prune.adaptive, prep.students, judge,
                         prep.selection_baseline - prep.allowed, budget)


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[str]:
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="edgekit-build-") as tmp:
            yield tmp
    else:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield str(keep)


def check_outputs(req: BuildRequest) -> None:
    """Fail in the first second, not after the search: version, name and -o folder."""
    from edge_agent.bundle.manifest import ModelInfo

    ModelInfo.from_dict({"name": req.name or "model", "version": str(req.version)}, "build")
    if req.out_dir.exists() and not req.out_dir.is_dir():
        raise BuildError(f"-o {req.out_dir} is a file; give a folder for the bundles and report")


def model_name(req: BuildRequest) -> str:
    """The bundle's model name: ``--name``, else the factory's name."""
    return req.name or req.model.rpartition(":")[2].replace("_", "-")


def _write_bundles(req: BuildRequest, results: dict[str, SearchResult], prep: Prepared,
                   recipe: Recipe, key: Any, profiles: list[Profile],
                   source: LatencySource) -> dict[str, Path]:
    bundles = {}
    by_name = {p.name: p for p in profiles}
    for name, result in results.items():
        if result.chosen is None:
            continue
        chosen = result.chosen
        out = req.out_dir / name / f"{model_name(req)}-{req.version}.ekb"
        student = student_of(prep.students, chosen.candidate)
        steps = dict(student.steps)
        if chosen.candidate.keep_float:  # an int8 file with these layers left in float
            steps["mixed_precision"] = {"keep_float": list(chosen.candidate.keep_float),
                                        "method": chosen.candidate.method}
        doc = lineage(prep.inputs.source, recipe.model_dump(mode="json"),
                      prep.inputs.calibration_sha256, req.parent_version,
                      Compression(prune_ratio=student.ratio, steps=steps))
        figures = manifest_figures(profile_figures(result, prep, by_name[name], source))
        write_chosen_bundle(chosen, name, prep.inputs, model_name(req), req.version, figures,
                            doc, key, out)
        bundles[name] = out
        progress.note(f"wrote {out}")
    return bundles


def manifest_figures(figures: dict[str, Any]) -> dict[str, Any]:
    """The report's figures the bundle manifest's ``Metrics`` block carries."""
    from edge_agent.contracts.build_info import Metrics

    known = set(Metrics.__dataclass_fields__)
    return {k: v for k, v in figures.items() if k in known}


def latency_note(profile: Profile, source: LatencySource) -> str:
    """Where a profile's latency figures come from and what they were used for, in words."""
    kind = "device" if source.on_device else profile.host_timing
    fast = list(dict.fromkeys(a for t in profile.targets for a in t.accelerators_used()))
    return LATENCY_NOTES[kind].format(source=source.description, providers=", ".join(fast))


def profile_figures(result: SearchResult, prep: Prepared, profile: Profile,
                    source: LatencySource) -> dict[str, Any]:
    """The chosen candidate's figures next to the original model's. ``metric`` and
    ``baseline_metric`` are on the gate split; ``selection_*`` on the selection split."""
    chosen = result.chosen
    figures: dict[str, Any] = {"metric_name": prep.inputs.metric_name,
                               "baseline_metric": round(prep.gate_baseline, 6),
                               "allowed_drop": round(result.allowed_drop, 6),
                               "metric_split": "gate",
                               "selection_baseline_metric": round(result.baseline_metric, 6),
                               "latency_host": source.description,
                               "latency_source": source.name,
                               "latency_note": latency_note(profile, source),
                               "selection": result.selection}
    if chosen is None:
        return figures
    ref = result.reference_for(chosen.candidate.format)
    figures.update({
        "format": chosen.candidate.format, "precision": chosen.candidate.precision,
        "method": chosen.candidate.method, "prune_ratio": chosen.candidate.ratio,
        "keep_float": list(chosen.candidate.keep_float),
        "metric": round(chosen.gate_metric, 6), "selection_metric": round(chosen.metric, 6),
        "latency_ms": chosen.latency_ms,
        "latency_ms_1thread": chosen.latency_ms_1thread, "threads": chosen.threads,
        "size_bytes": chosen.size_bytes, "parity": chosen.parity,
        "baseline_latency_ms": ref.latency_ms if ref else None,
        "baseline_latency_ms_1thread": ref.latency_ms_1thread if ref else None,
        "baseline_size_bytes": ref.size_bytes if ref else None,
    })
    if ref and ref.latency_ms and chosen.latency_ms:
        figures["speedup"] = round(ref.latency_ms / chosen.latency_ms, 3)
    return figures


@dataclass
class ReportContext:
    """Everything the report describes besides the per-profile results."""

    req: BuildRequest
    recipe: Recipe
    tolerance: Tolerance
    prep: Prepared
    ratios: RatioSearch | None
    budget: Budget
    source: LatencySource
    profiles: dict[str, Profile]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)


def task_section(result: SearchResult, prep: Prepared, evaluator: Evaluator) -> dict[str, Any]:
    """The task's own figures of the chosen file next to the original model's, on the gate
    split (a detector's mAP@0.5 and detections per image), and the task's picture."""
    task, chosen = prep.inputs.task, result.chosen
    if chosen is None:
        return {}
    shipped = evaluator.gate_outputs(chosen)
    figures = task.extra_figures(shipped, evaluator.gate_y)
    if not figures:
        return {}
    section: dict[str, Any] = {"task_figures": {
        "shipped": figures, "original": task.extra_figures(prep.gate_reference,
                                                           evaluator.gate_y)}}
    picture = task.picture(evaluator.gate_x[0].numpy(), take(prep.gate_reference, slice(0, 1)),
                           take(shipped, slice(0, 1)), prep.inputs.labels)
    if picture:
        section["task_picture"] = picture
    return section


def build_report(ctx: ReportContext, results: dict[str, SearchResult], bundles: dict[str, Path],
                 duration: float) -> dict[str, Any]:
    """The whole report document (what report.json holds)."""
    req, prep = ctx.req, ctx.prep
    profiles = {}
    for name, result in results.items():
        entry = {"status": "ok" if result.chosen else "failed",
                 "bundle": str(bundles[name]) if name in bundles else None,
                 **profile_figures(result, prep, ctx.profiles[name], ctx.source),
                 "selection_note": result.selection_note, "search_stop": result.stop,
                 "candidates": [_row(o, req.artifacts_dir) for o in result.outcomes],
                 "references": [_row(o, req.artifacts_dir) for o in result.references],
                 "mixed_precision": mixed_section(result),
                 **ctx.tasks.get(name, {})}
        if result.chosen is None:
            entry["reason"] = _failure_reason(result)
        profiles[name] = entry
    return {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(duration, 1), "model": req.model,
            "weights": str(req.weights) if req.weights else None, "data": req.data,
            "task": prep.inputs.task.spec.to_dict(),
            "metric": prep.inputs.metric_name, "baseline_metric": round(prep.gate_baseline, 6),
            "selection_baseline_metric": round(prep.selection_baseline, 6),
            "tolerance": {**ctx.tolerance.to_dict(), "described": ctx.tolerance.describe()},
            "host": {"machine": platform.machine(), "cpus": os.cpu_count()},
            "latency_source": {"name": ctx.source.name, "description": ctx.source.description},
            "splits": splits_section(prep),
            "search": search_section(ctx),
            "recipe": ctx.recipe.model_dump(mode="json"),
            "students": [{"key": s.key, **s.steps} for s in prep.students.made()],
            "profiles": profiles}


def splits_section(prep: Prepared) -> dict[str, Any]:
    """Which data each figure comes from."""
    return {"calibration": len(prep.data.calibration), **prep.split.describe(),
            "used_for": {"calibration": "quantization calibration",
                         "selection": "distillation early stopping, INC autotune, prune "
                                      "search verdicts, candidate tolerance and ranking",
                         "gate": "the reported metric and the final tolerance gate only"}}


def search_section(ctx: ReportContext) -> dict[str, Any]:
    """The prune search (ratios tried in order, verdicts, why it stopped) and the budget."""
    prune = ctx.recipe.prune
    section: dict[str, Any] = {"mode": "adaptive" if ctx.ratios else "list",
                               "budget": ctx.budget.to_dict()}
    if ctx.ratios is not None:
        section.update(ctx.ratios.to_dict())
    else:
        section["ratios"] = prune.candidate_ratios()
    return section


def _row(outcome: Any, kept: Path | None) -> dict[str, Any]:
    row = outcome.to_dict()
    if kept is not None and outcome.artifact is not None:
        row["file"] = str(outcome.artifact.path)
    return row


def _failure_reason(result: SearchResult) -> str:
    measured = [o for o in result.outcomes if o.metric is not None]
    if not result.outcomes:
        return "the recipe leaves no candidate for this profile's targets"
    if not measured:
        return "every candidate failed to export: " + "; ".join(
            sorted({o.reason for o in result.outcomes}))[:300]
    best = max(measured, key=lambda o: o.metric)
    return (f"no candidate within tolerance: best was {best.candidate.id} at "
            f"{best.metric:.4f}, floor {result.baseline_metric - result.allowed_drop:.4f}")


def _raise_if_failed(doc: dict[str, Any], report: Path) -> None:
    failed = {n: p["reason"] for n, p in doc["profiles"].items() if p["status"] != "ok"}
    if failed:
        listed = "; ".join(f"{n}: {r}" for n, r in failed.items())
        raise BuildError(f"no bundle for {', '.join(failed)} ({listed}); see {report}", doc)
