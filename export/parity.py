"""Parity: how closely an exported file's outputs follow a reference model's outputs."""

from __future__ import annotations

import numpy as np


def parity(outputs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Max abs difference and top-1 agreement of ``outputs`` vs ``reference`` ([N, classes])."""
    out = np.asarray(outputs, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if out.shape != ref.shape:
        return {"max_abs_diff": float("inf"), "top1_agreement": 0.0}
    diff = float(np.max(np.abs(out - ref))) if out.size else 0.0
    agree = float(np.mean(out.reshape(len(out), -1).argmax(1) == ref.reshape(len(ref), -1)
                          .argmax(1))) if len(out) else 1.0
    return {"max_abs_diff": round(diff, 6), "top1_agreement": round(agree, 5)}
