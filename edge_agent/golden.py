"""Golden input/output pairs: proof that a model computes here what it computed at build time."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.errors import ModelLoadError

# Base tolerances per precision: atol is scaled by the output's magnitude.
TOLERANCES = {"fp32": (1e-4, 1e-3), "fp16": (1e-2, 1e-2), "int8": (5e-2, 5e-2),
              "int8-dynamic": (5e-2, 5e-2)}


@dataclass
class GoldenResult:
    """How far a run of the golden input landed from the recorded output."""

    ok: bool
    max_abs_diff: float
    atol: float
    rtol: float
    why: str = ""
    """Why it failed, when the task judges by more than the elementwise difference."""

    def problem(self) -> str:
        """One line on a failed check (empty when it passed)."""
        if self.ok:
            return ""
        return self.why or (f"max abs diff {self.max_abs_diff:.4g} > atol {self.atol:.3g} "
                            f"(+rtol {self.rtol:.3g})")


def load_arrays(path: Path) -> list[np.ndarray]:
    """Arrays saved by ``save_arrays``, in order; pickles are never loaded."""
    try:
        with np.load(str(path), allow_pickle=False) as data:
            return [data[str(i)] for i in range(len(data.files))]
    except (ValueError, OSError, KeyError) as exc:
        raise ModelLoadError(f"golden file {path.name} is not a valid .npz of arrays") from exc


def save_arrays(arrays: list[np.ndarray]) -> bytes:
    """The .npz bytes of ``arrays``, keyed by their position."""
    buf = io.BytesIO()
    np.savez(buf, **{str(i): np.asarray(a) for i, a in enumerate(arrays)})
    return buf.getvalue()


def tolerance_for(precision: str, outputs: list[np.ndarray]) -> tuple:
    """(atol, rtol) for a precision, atol scaled by the largest output magnitude."""
    base_atol, rtol = TOLERANCES.get(precision, TOLERANCES["fp32"])
    scale = max([1.0] + [float(np.max(np.abs(o.astype(np.float64)))) for o in outputs if o.size])
    return base_atol * scale, rtol


def compare(expected: list[np.ndarray], actual: list[np.ndarray], atol: float,
            rtol: float) -> GoldenResult:
    """Compare outputs elementwise like ``np.allclose``; NaN or a shape change fails."""
    if len(expected) != len(actual):
        return GoldenResult(False, float("inf"), atol, rtol)
    worst, ok = 0.0, True
    for e, a in zip(expected, actual):
        if e.shape != a.shape:
            return GoldenResult(False, float("inf"), atol, rtol)
        e64, a64 = e.astype(np.float64), a.astype(np.float64)
        if not np.all(np.isfinite(a64)):
            return GoldenResult(False, float("inf"), atol, rtol)
        diff = np.abs(e64 - a64)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        ok = ok and bool(np.all(diff <= atol + rtol * np.abs(e64)))
    return GoldenResult(ok, worst, atol, rtol)
