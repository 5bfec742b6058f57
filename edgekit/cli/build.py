"""``edgekit build``: prune, distill, quantize and export a PyTorch model per hardware profile,
under an accuracy gate, into signed bundles. torch is imported only inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgekit.cli.options import ProfilesDir, dirs
from edgekit.cli.output import console, people_table


def build(
    model: str = typer.Option(..., "--model", help="FILE.py:FACTORY (or package.module:FACTORY) "
                              "returning a torch.nn.Module."),
    data: str = typer.Option(..., "--data", help="FILE.py:FUNCTION returning {train, "
                             "calibration, validation} DataLoaders (+ optional metric)."),
    profile: list[str] = typer.Option(..., "--profile", help="Hardware profile (repeatable)."),
    key: Path = typer.Option(..., "--key", help="Private key that signs the bundles."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
    weights: Path = typer.Option(None, "--weights", help="state_dict file (loaded with "
                                 "weights_only=True)."),
    recipe: Path = typer.Option(None, "--recipe", help="Recipe YAML fixing or bounding steps."),
    tolerance: str = typer.Option("0.01", "--tolerance", help="Largest allowed metric drop: "
                                  "0.01 (absolute, metric units) or 1% (of the baseline)."),
    name: str = typer.Option(None, "--name", help="Model name (default: the factory's name)."),
    version: str = typer.Option("1", "--version", help="Model version: 7 or 1.4.2."),
    parent_version: str = typer.Option(None, "--parent-version",
                                       help="Version this one replaces (lineage)."),
    seed: int = typer.Option(0, "--seed", help="Random seed for pruning and distillation."),
    keep_artifacts: Path = typer.Option(None, "--keep-artifacts", help="Keep every "
                                        "candidate's exported file in this folder."),
    time_budget: float = typer.Option(600.0, "--time-budget", help="Seconds the search may "
                                      "take (students, export, evaluation, timing); the "
                                      "report says where they went."),
    measure_on: str = typer.Option(None, "--measure-on", help="http://HOST:PORT of a running "
                                   "edgekit agent: time every candidate on that device, in "
                                   "its runtime (one --profile)."),
    measure_token: str = typer.Option(None, "--measure-token", envvar="EDGEKIT_AGENT_TOKEN",
                                      help="The agent's HTTP token (or $EDGEKIT_AGENT_TOKEN)."),
    show_progress: bool = typer.Option(True, "--progress/--no-progress",
                                       help="Show progress bars."),
    profiles_dir: list[Path] = ProfilesDir,
) -> None:
    """Build the fastest model within tolerance for each profile, as signed bundles."""
    from compress import progress
    from export.build import BuildRequest, run_build
    from export.errors import BuildError

    progress.enable(show_progress)
    request = BuildRequest(model=model, data=data, profiles=profile, key_file=key, out_dir=out,
                           weights=weights, recipe=recipe, tolerance=tolerance, name=name,
                           version=version, parent_version=parent_version,
                           profiles_dirs=dirs(profiles_dir), seed=seed,
                           artifacts_dir=keep_artifacts, time_budget_s=time_budget,
                           measure_on=measure_on, measure_token=measure_token)
    try:
        result = run_build(request)
    except BuildError as exc:
        if exc.report:
            console.print(summary_table(exc.report))
        raise
    console.print(summary_table(result.report))
    for name, p in result.report["profiles"].items():
        console.print(f"latency {name}: {p['latency_note']}", highlight=False)
    for name, path in result.bundles.items():
        console.print(f"bundle {name}: {path}", highlight=False)
    console.print(f"report: {result.report_json} and {result.report_html}", highlight=False)


def _ms(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def summary_table(report: dict[str, Any]) -> Table:
    """One row per profile: what was chosen and how it compares with the original (fp32)."""
    # One space between columns: nine columns fit an 80-column terminal.
    table = people_table("profile", "chosen", "method", "prune", "metric", "ms", "vs fp32",
                         "kB", "passed", title=f"edgekit build: baseline {report['metric']} "
                         f"{report['baseline_metric']:.4f} (gate split)", padding=0)
    for name, p in report["profiles"].items():
        kept = sum(c["status"] in ("chosen", "passed") for c in p["candidates"])
        chosen = f"{p.get('format')}/{p.get('precision')}" if p["status"] == "ok" \
            else "[red]none[/]"
        speedup = f"{p['speedup']:.2f}x" if p.get("speedup") else "-"
        size = f"{p['size_bytes'] / 1e3:.0f}" if p.get("size_bytes") else "-"
        metric = f"{p['metric']:.4f}" if p.get("metric") is not None else "-"
        table.add_row(name, chosen, str(p.get("method", "-")), str(p.get("prune_ratio", "-")),
                      metric, _ms(p.get("latency_ms")), speedup, size,
                      f"{kept}/{len(p['candidates'])}")
    return table
