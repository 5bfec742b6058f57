"""``edgekit build``: from a trained PyTorch model to one signed bundle per hardware profile.

Per profile: enumerate candidates (prune ratio x the profile's targets x quantizer
methods, as the recipe allows), measure each from its exported file in its real
runtime, keep the fastest within tolerance, and write its bundle. Students (pruned
and distilled models) and exported files are shared between profiles. The report
(JSON + HTML) is written whatever happens; a profile with no candidate within
tolerance gets no bundle and the build ends with a ``BuildError``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compress import progress
from compress.errors import RecipeError
from compress.recipe import Recipe, load_recipe
from compress.search import Candidate, SearchResult, run_search
from compress.techniques import StudentData, Students, check_names
from compress.tolerance import Tolerance
from compress.usercode import build_model, load_data
from edge_agent.bundle import load_private_key
from edge_agent.contracts.build_info import Compression
from export.compose import write_chosen_bundle
from export.errors import BuildError
from export.evaluate import Evaluator
from export.inputs import BuildInputs, prepare_inputs
from export.lineage import lineage
from export.registry import method_names
from export.report import write_html, write_json
from hardware_profiles import Profile, get_profile


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


def run_build(req: BuildRequest) -> BuildResult:
    """Run the whole build; raises BuildError (after writing the report) if a profile failed."""
    import torch

    started = time.monotonic()
    check_outputs(req)
    recipe = _load_recipe(req.recipe)
    tolerance = Tolerance.parse(req.tolerance)
    profiles = [get_profile(p, req.profiles_dirs) for p in dict.fromkeys(req.profiles)]
    key = load_private_key(req.key_file)
    torch.manual_seed(req.seed)
    teacher = build_model(req.model, req.weights)
    inputs = prepare_inputs(teacher, load_data(req.data), recipe, req.model, req.weights)
    allowed = tolerance.allowed_drop(inputs.baseline_metric)
    progress.note(f"baseline {inputs.metric_name} {inputs.baseline_metric:.4f}; "
                  f"allowed drop {allowed:.4f} ({tolerance.describe()})")
    students = Students(recipe, StudentData(teacher, inputs.data.example, inputs.train,
                                            (inputs.data.val_x, inputs.data.val_y),
                                            inputs.data.metric, req.seed))
    with _workdir(req.artifacts_dir) as work:
        tolerable = allowed / max(abs(inputs.baseline_metric), 1e-9)
        evaluator = Evaluator(recipe, inputs.data, Path(work), tolerable_loss=tolerable)
        results = {}
        for profile in profiles:
            progress.note(f"profile {profile.name}")
            results[profile.name] = run_search(profile, recipe, students, evaluator,
                                               inputs.baseline_metric, allowed,
                                               references(profile, recipe))
        bundles = _write_bundles(req, results, inputs, students, recipe, key)
    doc = build_report(req, recipe, tolerance, inputs, students, results, bundles,
                       time.monotonic() - started)
    req.out_dir.mkdir(parents=True, exist_ok=True)
    result = BuildResult(doc, bundles, write_json(doc, req.out_dir / "report.json"),
                         write_html(doc, req.out_dir / "report.html"))
    _raise_if_failed(doc, result.report_json)
    return result


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


def _write_bundles(req: BuildRequest, results: dict[str, SearchResult], inputs: BuildInputs,
                   students: Students, recipe: Recipe, key: Any) -> dict[str, Path]:
    bundles = {}
    for name, result in results.items():
        if result.chosen is None:
            continue
        chosen = result.chosen
        out = req.out_dir / name / f"{model_name(req)}-{req.version}.ekb"
        student = students.get(chosen.candidate.ratio)
        doc = lineage(inputs.source, recipe.model_dump(mode="json"), inputs.calibration_sha256,
                      req.parent_version,
                      Compression(prune_ratio=student.ratio, steps=dict(student.steps)))
        write_chosen_bundle(chosen, name, inputs, model_name(req), req.version,
                            profile_figures(result, inputs), doc, key, out)
        bundles[name] = out
        progress.note(f"wrote {out}")
    return bundles


def profile_figures(result: SearchResult, inputs: BuildInputs) -> dict[str, Any]:
    """The chosen candidate's figures next to the original model's (the manifest's metrics)."""
    chosen = result.chosen
    figures: dict[str, Any] = {"metric_name": inputs.metric_name,
                               "baseline_metric": round(result.baseline_metric, 6),
                               "allowed_drop": round(result.allowed_drop, 6)}
    if chosen is None:
        return figures
    ref = result.reference_for(chosen.candidate.format)
    figures.update({
        "format": chosen.candidate.format, "precision": chosen.candidate.precision,
        "method": chosen.candidate.method, "prune_ratio": chosen.candidate.ratio,
        "metric": round(chosen.metric, 6), "latency_ms": chosen.latency_ms,
        "latency_ms_1thread": chosen.latency_ms_1thread, "threads": chosen.threads,
        "size_bytes": chosen.size_bytes, "parity": chosen.parity,
        "baseline_latency_ms": ref.latency_ms if ref else None,
        "baseline_latency_ms_1thread": ref.latency_ms_1thread if ref else None,
        "baseline_size_bytes": ref.size_bytes if ref else None,
        "latency_host": f"{platform.machine()} x{os.cpu_count()} (this build host)",
    })
    if ref and ref.latency_ms and chosen.latency_ms:
        figures["speedup"] = round(ref.latency_ms / chosen.latency_ms, 3)
    return figures


def build_report(req: BuildRequest, recipe: Recipe, tolerance: Tolerance, inputs: BuildInputs,
                 students: Students, results: dict[str, SearchResult], bundles: dict[str, Path],
                 duration: float) -> dict[str, Any]:
    """The whole report document (what report.json holds)."""
    profiles = {}
    for name, result in results.items():
        entry = {"status": "ok" if result.chosen else "failed",
                 "bundle": str(bundles[name]) if name in bundles else None,
                 **profile_figures(result, inputs),
                 "candidates": [_row(o, req.artifacts_dir) for o in result.outcomes],
                 "references": [_row(o, req.artifacts_dir) for o in result.references]}
        if result.chosen is None:
            entry["reason"] = _failure_reason(result)
        profiles[name] = entry
    return {"created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_s": round(duration, 1), "model": req.model,
            "weights": str(req.weights) if req.weights else None, "data": req.data,
            "metric": inputs.metric_name, "baseline_metric": round(inputs.baseline_metric, 6),
            "tolerance": {**tolerance.to_dict(), "described": tolerance.describe()},
            "host": {"machine": platform.machine(), "cpus": os.cpu_count()},
            "recipe": recipe.model_dump(mode="json"),
            "students": [{"key": s.key, **s.steps} for s in students.made()],
            "profiles": profiles}


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
