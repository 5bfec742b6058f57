"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path

import typer

ProfilesDir = typer.Option(
    None, "--profiles-dir", help="Extra folder of profile YAML files (repeatable); "
    "also EDGEKIT_PROFILES_DIR.", file_okay=False)
JsonFlag = typer.Option(False, "--json", help="Print JSON instead of a table.")


def dirs(values: list[Path] | None) -> list[Path]:
    """The --profiles-dir values as a list."""
    return list(values or [])
