"""The accuracy-gated search: try candidates, measure each from its exported file, keep the
best one within tolerance, then confirm it on the gate split.

A candidate is a prune ratio x one of the profile's targets (format, precision, in
the profile's order) x a quantizer method registered for that format and precision
x a thread count (where the profile lists several), filtered by the recipe.
Measuring is done by an ``Evaluator`` the build passes in (``export/evaluate.py``),
so this module never imports the exporters.

With ``ratios`` from the adaptive prune search, each (target, method) starts at the
highest ratio whose student passed and steps down only while its file falls outside
tolerance. Verdicts use the selection split; a ``SELECTIONS`` policy ranks those
within tolerance (``fastest``, or ``target_order`` where host timings do not stand for
the device), and the first of the ranking whose metric on the gate split is within
tolerance is chosen, so the reported metric was never optimised for.

Mixed precision: when an int8 file drops more than the tolerance on the selection
split, or more than half of it while a float candidate is within tolerance (the
alternative it would likely lose to on the gate split), the plan's ``mixed`` hook
(``export/mixed_precision.py``) ranks its layers by sensitivity and returns candidates
keeping the fewest layers in float; they are timed, gated and ranked with the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from compress import progress
from compress.budget import Budget
from compress.errors import CompressError
from compress.recipe import Recipe
from compress.registry import Registry
from compress.techniques import Student, Students

CHOSEN, PASSED, REJECTED, FAILED, SKIPPED = "chosen", "passed", "rejected", "failed", "skipped"
FLOAT_PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class Candidate:
    """One thing to try: a prune ratio, a profile target and a quantizer method.

    Candidates compare by (ratio, target position in the profile, method, threads).
    ``threads`` is set when the profile lets the search choose the thread count (the
    target is then a copy with that count). ``keep_float`` names the layers a
    mixed-precision candidate leaves in float (empty: every layer the method quantizes).
    ``variant`` names the student variant the file is made from (``qat``: fine-tuned with
    fake quantization), "" for the ratio's student.
    """

    ratio: float
    target_index: int
    method: str
    target: Any = field(compare=False, hash=False)  # OnnxTarget | TfliteTarget
    threads: int | None = None
    keep_float: tuple[str, ...] = ()
    variant: str = ""  # the student variant it is made from ("qat"), "" for the ratio's own

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
        """``r<ratio>/<format>/<precision>/<method>[/qat][/float<n>][/t<threads>]``, as the
        report lists it (``qat``: from the QAT student; ``float<n>``: n layers in float)."""
        base = f"r{self.ratio:g}/{self.format}/{self.precision}/{self.method}"
        if self.variant:
            base += f"/{self.variant}"
        if self.keep_float:
            base += f"/float{len(self.keep_float)}"
        return base if self.threads is None else f"{base}/t{self.threads}"


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
    gate_metric: float | None = None
    latency_source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for the report."""
        c = self.candidate
        return {"id": c.id, "prune_ratio": c.ratio, "format": c.format,
                "precision": c.precision, "method": c.method, "status": self.status,
                "reason": self.reason, "metric": self.metric, "size_bytes": self.size_bytes,
                "latency_ms": self.latency_ms, "latency_ms_1thread": self.latency_ms_1thread,
                "threads": self.threads, "latency_source": self.latency_source,
                "gate_metric": self.gate_metric, "parity": self.parity,
                "keep_float": list(c.keep_float), "variant": c.variant}


class Evaluator(Protocol):
    """Measures candidates from their exported files (implemented by the build)."""

    def methods_for(self, fmt: str, precision: str) -> list[str]:
        """Quantizer methods allowed for this format and precision."""

    def thread_options(self, target: Any) -> list[int]:
        """Thread counts to try for a target (its ``threads`` first)."""

    def accuracy(self, candidate: Candidate, student: Student) -> Outcome:
        """Export the candidate, run it on the selection split; FAILED with a reason on error."""

    def latencies(self, outcomes: list[Outcome]) -> None:
        """Fill the latency figures of the outcomes whose files exist."""

    def gate_metric(self, outcome: Outcome) -> float:
        """The metric of the outcome's file on the gate split (never used for selection)."""


@dataclass
class SearchResult:
    """Every outcome of one profile's search, and the chosen one (None when none passed)."""

    outcomes: list[Outcome]
    chosen: Outcome | None
    baseline_metric: float
    allowed_drop: float
    references: list[Outcome] = field(default_factory=list)
    selection: str = "fastest"
    selection_note: str = ""
    stop: str = ""
    gate_baseline: float | None = None
    mixed_precision: list[dict[str, Any]] = field(default_factory=list)

    def reference_for(self, fmt: str) -> Outcome | None:
        """The measured reference (the original model, fp32) in one format."""
        return next((r for r in self.references if r.candidate.format == fmt
                     and r.status != FAILED), None)


def enumerate_candidates(profile: Any, recipe: Recipe, evaluator: Evaluator,
                         ratios: list[float] | None = None) -> list[Candidate]:
    """Ratios (the recipe's list unless given) x the profile's targets (recipe-filtered, in
    profile order) x methods x thread counts."""
    formats, precisions = set(recipe.search.formats), set(recipe.quantize.precisions)
    ratios = sorted(set(ratios)) if ratios is not None else recipe.prune.candidate_ratios()
    candidates = [variant
                  for index, target in enumerate(profile.targets)
                  if target.format in formats and target.precision in precisions
                  for ratio in ratios
                  for method in evaluator.methods_for(target.format, target.precision)
                  for variant in _thread_variants(ratio, index, method, target, evaluator)]
    unique = list(dict.fromkeys(candidates))
    limit = recipe.search.max_candidates
    return unique[:limit] if limit else unique


def _thread_variants(ratio: float, index: int, method: str, target: Any,
                     evaluator: Evaluator) -> list[Candidate]:
    options = evaluator.thread_options(target)
    if len(options) <= 1:
        return [Candidate(ratio, index, method, target)]
    return [Candidate(ratio, index, method, target.model_copy(update={"threads": n}), n)
            for n in options]


def gate(outcome: Outcome, baseline: float, allowed_drop: float, max_bytes: float) -> None:
    """Reject an outcome outside tolerance or the profile's size limit.

    Outcomes the evaluator already failed or rejected (e.g. an export error, a parity
    failure) keep their verdict.
    """
    if outcome.status in (FAILED, REJECTED, SKIPPED):
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


def within_tolerance(outcome: Outcome, floor: float) -> bool:
    """Whether an outcome's metric (selection split) clears ``floor``, before timing."""
    return (outcome.status not in (FAILED, REJECTED, SKIPPED) and outcome.metric is not None
            and math.isfinite(outcome.metric) and outcome.metric >= floor)


Ranking = Callable[[list[Outcome]], tuple[list[Outcome], str]]
SELECTIONS: Registry[Ranking] = Registry("selection policy", CompressError)


@SELECTIONS.register("fastest")
def rank_by_latency(passing: list[Outcome]) -> tuple[list[Outcome], str]:
    """Fastest first (ties: the profile's order, then the higher ratio); used where the
    timings stand for the device or rank it fairly."""
    order = sorted(passing, key=lambda o: (o.latency_ms, o.candidate.target_index,
                                           -o.candidate.ratio))
    return order, "fastest candidate within tolerance"


@SELECTIONS.register("target_order")
def rank_by_target_order(passing: list[Outcome]) -> tuple[list[Outcome], str]:
    """The profile's target order, then the highest prune ratio: used where host timings do
    not stand for the device (its fast path does not run on this host)."""
    position = {id(o): i for i, o in enumerate(passing)}
    order = sorted(passing, key=lambda o: (o.candidate.target_index, -o.candidate.ratio,
                                           position[id(o)]))
    return order, ("first of the profile's targets within tolerance, at the highest prune "
                   "ratio (host CPU timings do not stand for this device, so they do not rank)")


FinalGate = Callable[[Outcome], float]


@dataclass
class MixedRun:
    """What a mixed-precision hook made from one int8 candidate: the candidates it
    measured (fewest layers in float first) and its report (the sensitivity ranking)."""

    candidates: list[Candidate]
    report: dict[str, Any]


# (int8 candidate, its student, the metric floor to reach, how many runs this profile
# still has, this one included: the run's part of the time left) -> the run, or None
# when the candidate's method cannot leave layers in float
MixedPrecision = Callable[[Candidate, Student, float, int], MixedRun | None]


def choose(outcomes: list[Outcome], selection: str = "fastest", final: FinalGate | None = None,
           final_floor: float = -math.inf) -> Outcome | None:
    """Rank the passing outcomes by the ``selection`` policy; the first whose gate-split
    metric (``final``) clears ``final_floor`` is chosen. Every verdict gets its reason."""
    passing = [o for o in outcomes if o.status == PASSED]
    ranking, why = SELECTIONS.get(selection)(passing)
    best = None
    for o in ranking:
        if final is not None:
            o.gate_metric = final(o)
            if not (math.isfinite(o.gate_metric) and o.gate_metric >= final_floor):
                o.status, o.reason = REJECTED, (
                    f"within tolerance on the selection split, but the gate split gives "
                    f"{o.gate_metric:.4f}, below its floor {final_floor:.4f}")
                continue
        best = o
        break
    if best is None:
        return None
    best.status, best.reason = CHOSEN, why
    for o in ranking:
        if o.status == PASSED:
            o.reason = _passed_reason(o, best, selection)
    return best


def _passed_reason(o: Outcome, best: Outcome, selection: str) -> str:
    if selection == "fastest":
        return (f"within tolerance but {o.latency_ms / best.latency_ms:.2f}x the latency of "
                f"the chosen {best.candidate.id}")
    return f"within tolerance; after the chosen {best.candidate.id} in the profile's order"


@dataclass
class SearchPlan:
    """How one profile's search runs beyond the recipe.

    ``ratios``: the adaptive search's passing ratios (None: the recipe's list, every
    candidate measured). ``selection``: a ``SELECTIONS`` policy. ``final``/``gate_baseline``:
    the gate split's metric and baseline. ``budget``/``share_s``: stop stepping down to
    lower ratios (or measuring list candidates) after ``share_s`` seconds. ``mixed``: the
    mixed-precision hook (None: off). ``reserve_s``: the budget's held-back seconds this
    profile gets back after its walk, for mixed precision (then for whatever follows).
    """

    ratios: list[float] | None = None
    selection: str = "fastest"
    final: FinalGate | None = None
    gate_baseline: float | None = None
    budget: Budget | None = None
    share_s: float = math.inf
    mixed: MixedPrecision | None = None
    reserve_s: float = 0.0


def run_search(profile: Any, recipe: Recipe, students: Students, evaluator: Evaluator,
               baseline: float, allowed_drop: float,
               references: list[Candidate] | None = None,
               plan: SearchPlan | None = None) -> SearchResult:
    """Measure ``profile``'s candidates, gate them and choose by the plan's policy.

    ``references`` (e.g. the original model in fp32, per format) are exported and timed
    in the same benchmark as the candidates, so speed-ups are measured like for like,
    but they are never gated or chosen.
    """
    plan = plan or SearchPlan()
    candidates = enumerate_candidates(profile, recipe, evaluator, plan.ratios)
    walk = _descending if plan.ratios is not None else _every
    outcomes, stop = walk(profile, candidates, students, evaluator, baseline - allowed_drop,
                          plan)
    mixed_reports: list[dict[str, Any]] = []
    if plan.budget is not None:  # this profile's part of the held-back time
        plan.budget.release(plan.reserve_s)
    if plan.mixed is not None:
        outcomes += _mixed_precision(profile, outcomes, students, evaluator,
                                     (baseline, allowed_drop), plan.mixed, mixed_reports)
    refs = [_measure(profile, c, students, evaluator) for c in references or []]
    evaluator.latencies([o for o in outcomes + refs if o.status not in (FAILED, SKIPPED)])
    max_bytes = profile.limits.max_model_mb * 1e6
    for outcome in outcomes:
        gate(outcome, baseline, allowed_drop, max_bytes)
    for ref in refs:
        ref.status, ref.reason = ref.status or "reference", ref.reason or "original model, fp32"
    final_floor = (plan.gate_baseline - allowed_drop if plan.gate_baseline is not None
                   else -math.inf)
    chosen = choose(outcomes, plan.selection, plan.final, final_floor)
    while chosen is None and plan.ratios is not None:
        # every candidate within tolerance on the selection split failed the gate: step
        # down to the next lower ratio of each (target, method), budget or not, because
        # shipping nothing when a less pruned model would pass is worse than running late
        lower = _next_lower(candidates, outcomes)
        if not lower:
            break
        new = [_measure(profile, c, students, evaluator) for c in lower]
        evaluator.latencies([o for o in new if o.status not in (FAILED, SKIPPED)])
        for outcome in new:
            gate(outcome, baseline, allowed_drop, max_bytes)
        outcomes += new
        chosen = choose(new, plan.selection, plan.final, final_floor)
    _, note = SELECTIONS.get(plan.selection)([])
    return SearchResult(outcomes, chosen, baseline, allowed_drop, refs, plan.selection, note,
                        stop, plan.gate_baseline, mixed_reports)


def mixed_floor(outcome: Outcome, outcomes: list[Outcome], baseline: float,
                allowed_drop: float) -> tuple[float, str] | None:
    """The floor a mixed-precision search of ``outcome`` must reach and why it runs, or
    None when it need not: the full tolerance when int8 misses it; half of it when int8
    uses more than half while a float candidate is within tolerance."""
    c = outcome.candidate
    if (c.precision != "int8" or c.keep_float or outcome.status in (FAILED, REJECTED, SKIPPED)
            or outcome.metric is None or not math.isfinite(outcome.metric)):
        return None
    drop = baseline - outcome.metric
    if drop > allowed_drop:
        return baseline - allowed_drop, (f"int8 drops {drop:.4f} on the selection split, over "
                                         f"the tolerance {allowed_drop:.4f}")
    alternative = next((o for o in outcomes if o.candidate.precision in FLOAT_PRECISIONS
                        and within_tolerance(o, baseline - allowed_drop)), None)
    if alternative is not None and drop > allowed_drop / 2:
        return baseline - allowed_drop / 2, (
            f"int8 drops {drop:.4f}, over half the tolerance {allowed_drop:.4f}, while "
            f"{alternative.candidate.id} is the float alternative")
    return None


def _mixed_precision(profile: Any, outcomes: list[Outcome], students: Students,
                     evaluator: Evaluator, gate_figures: tuple[float, float],
                     hook: MixedPrecision, reports: list[dict[str, Any]]) -> list[Outcome]:
    """Per (target, method), the highest-ratio int8 outcome that needs it gets mixed
    candidates, for each of its thread counts; their reports go to ``reports``."""
    baseline, allowed_drop = gate_figures
    done: set[tuple[int, str]] = set()
    runs: list[tuple[Outcome, tuple[float, str]]] = []
    for o in sorted(outcomes, key=lambda o: -o.candidate.ratio):
        group = (o.candidate.target_index, o.candidate.method)
        need = None if group in done else mixed_floor(o, outcomes, baseline, allowed_drop)
        if need is not None:
            done.add(group)
            runs.append((o, need))
    new: list[Outcome] = []
    for i, (o, need) in enumerate(runs):
        c, group = o.candidate, (o.candidate.target_index, o.candidate.method)
        progress.note(f"  {profile.name}: {c.id}: mixed precision ({need[1]})")
        run = hook(c, student_of(students, c), need[0], len(runs) - i)
        if run is None:
            continue
        variants = [v.candidate for v in outcomes if v.candidate.ratio == c.ratio
                    and (v.candidate.target_index, v.candidate.method) == group]
        new += [_measure(profile, replace(m, target=v.target, threads=v.threads), students,
                         evaluator) for m in run.candidates for v in variants]
        reports.append({"candidate": c.id, "trigger": need[1], "floor": round(need[0], 6),
                        **run.report, "candidates": [m.id for m in run.candidates]})
    return new


Walk = tuple[list[Outcome], str]


def _out_of_time(plan: SearchPlan, started: float) -> bool:
    return plan.budget is not None and (plan.budget.elapsed() - started > plan.share_s
                                        or plan.budget.left() <= 0)


def _skipped(candidate: Candidate) -> Outcome:
    return Outcome(candidate, SKIPPED, "time budget spent before it was measured")


def _every(profile: Any, candidates: list[Candidate], students: Students,
           evaluator: Evaluator, floor: float, plan: SearchPlan) -> Walk:
    """Every candidate (a hand-written ratio list), until the budget share is spent."""
    started = plan.budget.elapsed() if plan.budget else 0.0
    outcomes, stop = [], ""
    for c in candidates:
        if outcomes and _out_of_time(plan, started):
            stop = stop or f"time budget: {profile.name}'s share ({plan.share_s:.0f} s) spent"
            outcomes.append(_skipped(c))
            continue
        outcomes.append(_measure(profile, c, students, evaluator))
    return outcomes, _record_stop(plan, stop)


def _descending(profile: Any, candidates: list[Candidate], students: Students,
                evaluator: Evaluator, floor: float, plan: SearchPlan) -> Walk:
    """Per (target, method): the highest passing ratio first, lower ones only while the file
    falls outside tolerance, and only within the budget share."""
    started = plan.budget.elapsed() if plan.budget else 0.0
    groups: dict[tuple[int, str], dict[float, list[Candidate]]] = {}
    for c in candidates:
        groups.setdefault((c.target_index, c.method), {}).setdefault(c.ratio, []).append(c)
    outcomes, stop = [], ""
    for by_ratio in groups.values():
        for step, ratio in enumerate(sorted(by_ratio, reverse=True)):
            if step > 0 and _out_of_time(plan, started):
                stop = f"time budget: {profile.name}'s share ({plan.share_s:.0f} s) spent"
                break
            measured = [_measure(profile, c, students, evaluator) for c in by_ratio[ratio]]
            outcomes += measured
            if within_tolerance(measured[0], floor) or measured[0].status == FAILED:
                break
    return outcomes, _record_stop(plan, stop)


def _next_lower(candidates: list[Candidate], outcomes: list[Outcome]) -> list[Candidate]:
    """Per (target, method), the candidates of the next ratio below the lowest measured."""
    measured: dict[tuple[int, str], float] = {}
    for o in outcomes:
        key = (o.candidate.target_index, o.candidate.method)
        measured[key] = min(measured.get(key, math.inf), o.candidate.ratio)
    nxt: dict[tuple[int, str], float] = {}
    for c in candidates:
        key = (c.target_index, c.method)
        if c.ratio < measured.get(key, math.inf) and c.ratio > nxt.get(key, -math.inf):
            nxt[key] = c.ratio
    return [c for c in candidates
            if (c.target_index, c.method) in nxt and c.ratio == nxt[(c.target_index, c.method)]]


def _record_stop(plan: SearchPlan, stop: str) -> str:
    if stop and plan.budget is not None:
        plan.budget.stopped(stop)
    return stop


def _measure(profile: Any, candidate: Candidate, students: Students,
             evaluator: Evaluator) -> Outcome:
    outcome = evaluator.accuracy(candidate, student_of(students, candidate))
    shown = f"metric {outcome.metric:.4f}" if outcome.metric is not None else outcome.reason
    progress.note(f"  {profile.name}: {candidate.id}: {shown}")
    return outcome


def student_of(students: Students, candidate: Candidate) -> Student:
    """The student a candidate's file is made from (its ratio's, or that one's variant)."""
    if candidate.variant:
        return students.get(candidate.ratio, candidate.variant)
    return students.get(candidate.ratio)
