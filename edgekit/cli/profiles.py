"""``edgekit profiles``: list and show hardware profiles."""

from __future__ import annotations

from pathlib import Path

import typer

from edgekit.cli.options import JsonFlag, ProfilesDir, dirs
from edgekit.cli.output import console, people_table, print_json, runtime_text

app = typer.Typer(help="Hardware profiles: what each device is and what it runs best.",
                  no_args_is_help=True)


@app.command("list")
def list_profiles(as_json: bool = JsonFlag, profiles_dir: list[Path] = ProfilesDir) -> None:
    """List every known profile."""
    from hardware_profiles import load_profiles

    profiles = load_profiles(dirs(profiles_dir))
    if as_json:
        print_json([p.model_dump(mode="json") for p in profiles.values()])
        return
    table = people_table("name", "arch", "cpu", "RAM", "accelerators", "targets (best first)",
                         title="edgekit hardware profiles", keep=("name",))
    for p in profiles.values():
        targets = "\n".join(f"{t.format}/{t.precision}" for t in p.targets)
        accel = ", ".join(a.model for a in p.accelerators) or "-"
        table.add_row(p.name, p.arch, f"{p.cpu.cores}x {p.cpu.model}", f"{p.memory_mb} MB",
                      accel, targets)
    console.print(table)


@app.command("show")
def show_profile(name: str, as_json: bool = JsonFlag,
                 profiles_dir: list[Path] = ProfilesDir) -> None:
    """Show one profile in full."""
    from hardware_profiles import get_profile

    profile = get_profile(name, dirs(profiles_dir))
    if as_json:
        print_json(profile.model_dump(mode="json"))
        return
    console.print(f"[bold]{profile.name}[/]: {profile.description}")
    console.print(f"arch {profile.arch}, {profile.cpu.cores}x {profile.cpu.model}, "
                  f"{profile.memory_mb} MB RAM, OS {profile.software.os_image} "
                  f"(python {profile.software.os_python}; "
                  f"agent on {profile.software.agent_python})")
    table = people_table("#", "format", "precision", "runtime", "notes",
                         title="targets, best first")
    for i, t in enumerate(profile.targets, 1):
        runtime = runtime_text(t.runtime_options())
        table.add_row(str(i), t.format, t.precision, runtime, t.notes)
    console.print(table)
    console.print(f"limits: model <= {profile.limits.max_model_mb} MB, "
                  f"latency budget {profile.limits.latency_budget_ms} ms")
