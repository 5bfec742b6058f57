"""The honest gate: the data the search optimises for is not the data its figure is reported on.

Calibration (quantization) uses the user's ``calibration`` loader. Selection (distill
early stopping, INC autotune, the prune search's verdicts, the candidates' tolerance)
uses the ``selection`` split; the reported metric and the final tolerance gate use the
``gate`` split only. With a ``test`` loader from the data function, the whole
validation set selects and ``test`` gates; without one, the validation set is split
in two with a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compress.errors import UserCodeError

GATE_FRACTION = 0.5
MIN_GATE_SAMPLES = 2


@dataclass
class SelectionAndGate:
    """Which validation samples select (``selection``, indices) and the gate's samples."""

    selection: torch.Tensor
    gate_x: torch.Tensor
    gate_y: torch.Tensor
    source: str

    def describe(self) -> dict[str, object]:
        """Plain JSON for the report: sizes and where the gate split comes from."""
        return {"selection": len(self.selection), "gate": len(self.gate_y),
                "gate_source": self.source}


def selection_and_gate(val_x: torch.Tensor, val_y: torch.Tensor,
                       test: tuple[torch.Tensor, torch.Tensor] | None = None,
                       seed: int = 0) -> SelectionAndGate:
    """Split the validation set (or take the user's test set as the gate)."""
    if test is not None:
        return SelectionAndGate(torch.arange(len(val_y)), test[0], test[1],
                                "the data function's test loader")
    n_gate = int(len(val_y) * GATE_FRACTION)
    if n_gate < MIN_GATE_SAMPLES or len(val_y) - n_gate < MIN_GATE_SAMPLES:
        raise UserCodeError(f"the validation loader has {len(val_y)} samples; the build needs "
                            f"at least {2 * MIN_GATE_SAMPLES} to split into selection and gate "
                            "halves (or return a separate 'test' loader)")
    order = torch.randperm(len(val_y), generator=torch.Generator().manual_seed(seed))
    gate = order[:n_gate].sort().values
    return SelectionAndGate(order[n_gate:].sort().values, val_x[gate], val_y[gate],
                            f"{n_gate} of the {len(val_y)} validation samples (seed {seed}), "
                            "never used for selection")
