"""The accuracy-gated search: try candidates, measure each from its exported file, keep the
fastest one within tolerance.

A candidate is a prune ratio x one of the profile's targets (format, precision, in
the profile's order) x a quantizer method registered for that format and precision,
filtered by the recipe. Measuring is done by an ``Evaluator`` the build passes in
(``export/evaluate.py``), so this module never imports the exporters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from compress import progress
from compress.recipe import Recipe
from compress.techniques import Student, Students

CHOSEN, PASSED, REJECTED, FAILED = "chosen", "passed", "rejected", "failed"


@dataclass(frozen=True)
class Candidate:
    """One thing to try: a prune ratio, a profile target and a quantizer method.

    Candidates compare by (ratio, target position in the profile, method).
    """

    ratio: float
    target_index: int
    method: str
    target: Any = field(compare=False, hash=False)  # OnnxTarget | TfliteTarget

    @property
    def format(self) -> str:
        """The target's model format."""
        return self.target.format

    @property
    def precision(self) -> str:
        """The target's precision."""
        return self.target.precision

    @property
    def id(self) -> str:
        """``r<ratio>/<format>/<precision>/<method>``, as the report lists it."""
        return f"r{self.ratio:g}/{self.format}/{self.precision}/{self.method}"


@dataclass
class Outcome:
    """What measuring a candidate found, and the verdict."""

    candidate: Candidate
    status: str = ""
    reason: str = ""
    metric: float | None = None
    size_bytes: int | None = None
    latency_ms: float | None = None
    latency_ms_1thread: float | None = None
    threads: int | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    artifact: Any = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for the report."""
        c = self.candidate
        return {"id": c.id, "prune_ratio": c.ratio, "format": c.format,
                "precision": c.precision, "method": c.method, "status": self.status,
                "reason": self.reason, "metric": self.metric, "size_bytes": self.size_bytes,
                "latency_ms": self.latency_ms, "latency_ms_1thread": self.latency_ms_1thread,
                "threads": self.threads, "parity": self.parity}


class Evaluator(Protocol):
    """Measures candidates from their exported files (implemented by the build)."""

    def methods_for(self, fmt: str, precision: str) -> list[str]:
        """Quantizer methods allowed for this format and precision."""

    def accuracy(self, candidate: Candidate, student: Student) -> Outcome:
        """Export the candidate, run it on the validation set; FAILED with a reason on error."""

    def latencies(self, outcomes: list[Outcome]) -> None:
        """Fill the latency figures of the outcomes whose files exist."""


@dataclass
class SearchResult:
    """Every outcome of one profile's search, and the chosen one (None when none passed)."""

    outcomes: list[Outcome]
    chosen: Outcome | None
    baseline_metric: float
    allowed_drop: float
    references: list[Outcome] = field(default_factory=list)

    def reference_for(self, fmt: str) -> Outcome | None:
        """The measured reference (the original model, fp32) in one format."""
        return next((r for r in self.references if r.candidate.format == fmt
                     and r.status != FAILED), None)


def enumerate_candidates(profile: Any, recipe: Recipe, evaluator: Evaluator) -> list[Candidate]:
    """Ratios x the profile's targets (recipe-filtered, in profile order) x methods."""
    formats, precisions = set(recipe.search.formats), set(recipe.quantize.precisions)
    candidates = [Candidate(ratio, index, method, target)
                  for index, target in enumerate(profile.targets)
                  if target.format in formats and target.precision in precisions
                  for ratio in recipe.prune.candidate_ratios()
                  for method in evaluator.methods_for(target.format, target.precision)]
    unique = list(dict.fromkeys(candidates))
    limit = recipe.search.max_candidates
    return unique[:limit] if limit else unique


def gate(outcome: Outcome, baseline: float, allowed_drop: float, max_bytes: float) -> None:
    """Reject an outcome outside tolerance or the profile's size limit.

    Outcomes the evaluator already failed or rejected (e.g. an export error, a parity
    failure) keep their verdict.
    """
    if outcome.status in (FAILED, REJECTED):
        return
    if outcome.metric is None:
        outcome.status, outcome.reason = REJECTED, "no metric was measured"
    elif not math.isfinite(outcome.metric):  # NaN compares False with everything
        outcome.status, outcome.reason = REJECTED, f"metric is {outcome.metric}, not a number"
    elif outcome.metric < baseline - allowed_drop:
        outcome.status, outcome.reason = REJECTED, (
            f"metric {outcome.metric:.4f} is {baseline - outcome.metric:.4f} below the "
            f"baseline {baseline:.4f}; tolerance allows {allowed_drop:.4f}")
    elif outcome.size_bytes is not None and outcome.size_bytes > max_bytes:
        outcome.status, outcome.reason = REJECTED, (
            f"{outcome.size_bytes / 1e6:.1f} MB exceeds the profile's limit "
            f"{max_bytes / 1e6:.1f} MB")
    elif outcome.latency_ms is None:
        outcome.status, outcome.reason = REJECTED, "latency could not be measured"
    else:
        outcome.status = PASSED


def choose(outcomes: list[Outcome]) -> Outcome | None:
    """Mark the fastest passing outcome as chosen and explain the verdict of the others."""
    passing = [o for o in outcomes if o.status == PASSED]
    if not passing:
        return None
    best = min(passing, key=lambda o: o.latency_ms)
    best.status, best.reason = CHOSEN, "fastest candidate within tolerance"
    for o in passing:
        if o is not best:
            o.reason = (f"within tolerance but {o.latency_ms / best.latency_ms:.2f}x the "
                        f"latency of the chosen {best.candidate.id}")
    return best


def run_search(profile: Any, recipe: Recipe, students: Students, evaluator: Evaluator,
               baseline: float, allowed_drop: float,
               references: list[Candidate] | None = None) -> SearchResult:
    """Measure every candidate of ``profile``, gate them and choose the fastest that passes.

    ``references`` (e.g. the original model in fp32, per format) are exported and timed
    in the same benchmark as the candidates, so speed-ups are measured like for like,
    but they are never gated or chosen.
    """
    outcomes = [_measure(profile, c, students, evaluator)
                for c in enumerate_candidates(profile, recipe, evaluator)]
    refs = [_measure(profile, c, students, evaluator) for c in references or []]
    evaluator.latencies([o for o in outcomes + refs if o.status != FAILED])
    max_bytes = profile.limits.max_model_mb * 1e6
    for outcome in outcomes:
        gate(outcome, baseline, allowed_drop, max_bytes)
    for ref in refs:
        ref.status, ref.reason = ref.status or "reference", ref.reason or "original model, fp32"
    return SearchResult(outcomes, choose(outcomes), baseline, allowed_drop, refs)


def _measure(profile: Any, candidate: Candidate, students: Students,
             evaluator: Evaluator) -> Outcome:
    outcome = evaluator.accuracy(candidate, students.get(candidate.ratio))
    shown = f"metric {outcome.metric:.4f}" if outcome.metric is not None else outcome.reason
    progress.note(f"  {profile.name}: {candidate.id}: {shown}")
    return outcome
