"""Find, read and validate hardware profiles.

Built-in profiles live beside this module; users add or override profiles by
dropping YAML files into folders named by ``--profiles-dir`` or the
``EDGEKIT_PROFILES_DIR`` environment variable (several folders separated by
``os.pathsep``). A later folder overrides an earlier one for the same name.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from hardware_profiles.errors import ProfileError
from hardware_profiles.schema import Profile

BUILTIN_DIR = Path(__file__).resolve().parent
ENV_VAR = "EDGEKIT_PROFILES_DIR"


def profile_dirs(extra: list[Path] | None = None) -> list[Path]:
    """The folders searched for profiles, lowest precedence first."""
    dirs = [BUILTIN_DIR]
    env = os.environ.get(ENV_VAR, "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += list(extra or [])
    for d in dirs[1:]:
        if not d.is_dir():
            raise ProfileError(f"profiles folder {d} does not exist; create it or fix the path")
    return dirs


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    got = first.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"field '{loc}': {first['msg']}{got_text}"


def load_profile_file(path: Path) -> Profile:
    """Read and validate one profile file; errors name the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0]
        raise ProfileError(f"{path}: cannot read YAML: {reason}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: expected a mapping of profile fields at the top level")
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {_describe(exc)}") from exc
    if profile.name != path.stem:
        raise ProfileError(
            f"{path}: name '{profile.name}' must match the file name; rename one of them"
        )
    return profile


def load_profiles(extra_dirs: list[Path] | None = None) -> dict[str, Profile]:
    """Every profile found, by name; user folders override built-ins of the same name."""
    found: dict[str, Profile] = {}
    for folder in profile_dirs(extra_dirs):
        for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
            profile = load_profile_file(path)
            found[profile.name] = profile
    return found


def get_profile(name: str, extra_dirs: list[Path] | None = None) -> Profile:
    """One profile by name, or a ProfileError listing the names that exist."""
    profiles = load_profiles(extra_dirs)
    if name not in profiles:
        known = ", ".join(sorted(profiles))
        raise ProfileError(f"unknown profile '{name}'; known profiles: {known}")
    return profiles[name]
