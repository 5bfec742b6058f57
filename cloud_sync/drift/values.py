"""Output drift of a generic model: each named output's value histogram in telemetry
``values`` against the bundle's ``reference_stats.values`` entry of that name.

One kind, ``values``: PSI per output (``below`` and ``above`` are bins), corrected over
outputs like input channels are (Bonferroni or Benjamini-Hochberg), the score being the
output furthest over its threshold. The values of one inference are correlated (one
output tensor), so, as for pixels, ``n = min(values counted, inferences)`` and ``m =
min(reference values, reference.n)`` (proof in ``cloud_sync.drift.stats``). The result's
``channels`` are the outputs, in the reference's order.
"""

from __future__ import annotations

import numpy as np

from cloud_sync.drift.scores import (
    DriftConfig,
    DriftError,
    DriftResult,
    _Judged,
    _result,
    _same_edges,
    judge_rows,
)
from cloud_sync.drift.window import WindowCounts
from edge_agent.contracts.reference import ReferenceStats


def _padded(rows: list[list[int]] | list[np.ndarray]) -> np.ndarray:
    """Rows of different lengths as one array (zero bins are dropped as dead anyway)."""
    width = max(len(r) for r in rows)
    out = np.zeros((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def value_drift(reference: ReferenceStats, window: WindowCounts, config: DriftConfig,
                alpha: float) -> DriftResult:
    """PSI of each output's value histogram, corrected over outputs."""
    j = _Judged("psi", floor=config.psi_floor, alpha=alpha)
    refs, seen = reference.values, window.tasks.values
    if not refs:
        j.missing = "the reference statistics hold no output value histograms"
    elif not seen:
        j.missing = "the window holds no output value histograms"
    else:
        missing = [r.name for r in refs if r.name not in seen]
        if missing:
            raise DriftError(f"the window has no values for output(s) {', '.join(missing)}: "
                             "compare a window with its own model version's reference")
        for ref in refs:
            _same_edges(seen[ref.name].edges, ref.edges, f"output {ref.name!r} value")
        inferences = np.array([seen[r.name].inferences for r in refs])
        j.units = int(inferences.min())
        judge_rows(j, _padded([seen[r.name].counts for r in refs]),
                   _padded([r.counts for r in refs]), inferences, reference.n, config,
                   "an output")
    return _result("values", window, config, j)
