"""Photometric augmentations for retraining on digits, on normalised model inputs
(``(unit - MEAN) / STD``, ``[N, 1, H, W]``): each maps the [0, 1] image underneath.

``augment(x, y, names, seed)`` returns the originals plus one augmented copy per name,
so a retrained model sees both the old inputs and the variations it must now handle.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from examples.digits.data import MEAN, STD

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def polarity(unit: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Dark-on-light instead of light-on-dark."""
    return 1.0 - unit


def sensor_noise(unit: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gaussian noise of a random strength per image (sigma up to 0.3)."""
    sigma = torch.rand(unit.shape[0], 1, 1, 1, generator=gen) * 0.3
    return (unit + sigma * torch.randn(unit.shape, generator=gen)).clamp(0.0, 1.0)


def quarter_turn(unit: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Rotated by a random multiple of 90 degrees."""
    turns = torch.randint(0, 4, (unit.shape[0],), generator=gen)
    return torch.stack([torch.rot90(img, int(k), dims=(-2, -1)) for img, k in zip(unit, turns,
                                                                                 strict=True)])


AUGMENTATIONS: dict[str, Augmentation] = {"polarity": polarity, "noise": sensor_noise,
                                          "rotate": quarter_turn}


def augment(x: torch.Tensor, y: torch.Tensor, names: list[str], seed: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``y`` plus one augmented copy of ``x`` per augmentation named."""
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}; known: "
                         f"{', '.join(sorted(AUGMENTATIONS))}")
    gen = torch.Generator().manual_seed(seed)
    unit = x * STD + MEAN
    copies = [x] + [(AUGMENTATIONS[n](unit, gen) - MEAN) / STD for n in names]
    return torch.cat(copies).float(), y.repeat(len(copies))
