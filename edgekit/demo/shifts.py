"""Input shifts the demo applies to some devices' streams: functions on the model's input
(normalised images, ``[N, 1, H, W]``: digits, digit canvases), each working on the [0, 1]
image underneath. Each task names the shifts that make sense for it.

A shift is deterministic for a given input and seed, so the same digit shifted twice is
the same array (the demo's labelling stand-in looks inputs up by their bytes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def invert(unit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White digits on black become black on white (a camera with the other polarity)."""
    return 1.0 - unit


def rotate(unit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotated a quarter turn (a camera mounted sideways)."""
    return np.rot90(unit, k=1, axes=(-2, -1))


def noise(unit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Strong sensor noise."""
    return np.clip(unit + rng.normal(0.0, 0.35, unit.shape), 0.0, 1.0)


DIM, DIM_NOISE = 0.5, 0.1


def dim(unit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A darker scene and a noisier sensor (dusk, a dirty lens, a cheaper camera): the
    image at DIM of its brightness plus Gaussian noise of sigma DIM_NOISE."""
    return np.clip(unit * DIM + rng.normal(0.0, DIM_NOISE, unit.shape), 0.0, 1.0)


SHIFTS: dict[str, Shift] = {"invert": invert, "rotate": rotate, "noise": noise, "dim": dim}


def apply(name: str, x: np.ndarray, mean: float, std: float, seed: int = 0) -> np.ndarray:
    """Shift normalised inputs ``x`` (``(unit - mean) / std``) by the named shift."""
    unit = x.astype(np.float64) * std + mean
    shifted = SHIFTS[name](unit, np.random.default_rng(seed))
    return ((np.ascontiguousarray(shifted) - mean) / std).astype(np.float32)
