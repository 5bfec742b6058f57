"""The digits example end to end, as one call (what the demo runs).

    from examples.digits.pipeline import build_digits
    result = build_digits(workdir, key_file, profiles=["x86-64"])
    result.bundles["x86-64"]   # the signed bundle; result.report_json, result.report_html
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.digits.train import train_baseline

HERE = Path(__file__).resolve().parent


def build_digits(workdir: Path, key_file: Path, profiles: Sequence[str] = ("x86-64",),
                 arch: str = "small_cnn", version: str = "1",
                 parent_version: str | None = None, recipe: Path | None = None,
                 weights: Path | None = None, tolerance: str = "0.01") -> Any:
    """Train the ``arch`` baseline (unless ``weights`` is given), then ``edgekit build`` it.

    Bundles go to ``workdir/build/<profile>/digits-<version>.ekb``; returns the
    ``export.build.BuildResult`` (``bundles``, ``report``, ``report_json``,
    ``report_html``). Raises ``export.errors.BuildError`` if a profile gets no bundle.
    """
    from export.build import BuildRequest, run_build

    workdir = Path(workdir)
    if weights is None:
        weights, _ = train_baseline(arch, workdir / f"{arch}.pt")
    return run_build(BuildRequest(
        model=f"{HERE / 'models.py'}:{arch}", data=f"{HERE / 'data.py'}:data",
        profiles=list(profiles), key_file=Path(key_file), out_dir=workdir / "build",
        weights=Path(weights), recipe=recipe, tolerance=tolerance, name="digits",
        version=version, parent_version=parent_version))
