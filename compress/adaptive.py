"""The adaptive prune search: find the highest prune ratio whose distilled student stays
within tolerance, without a hand-written ratio list.

Start at ``first``; while the student passes, step up (each step keeps ``keep_factor``
of the MACs the last ratio kept); after the first failure, bisect between the last
ratio that passed and the first that failed until they are ``resolution`` apart.
Every student is grown from the last one that passed (progressive pruning). The
search stops early, and says so, when less than ``min_fit`` of the last student's
time is left in its share of the time budget; a student's distillation stops before
an epoch that would overrun that share.
The verdicts use the selection split only (the caller's ``judge``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from compress import progress
from compress.budget import Budget
from compress.recipe import AdaptiveConfig
from compress.techniques import Student, Students

START, STEP_UP, BISECT, LONGER = "start", "step up", "bisect", "distil longer"


@dataclass
class RatioTrial:
    """One ratio tried: its student's metric on the selection split and the verdict."""

    ratio: float
    step: str
    parent: str | None
    metric: float
    passed: bool
    seconds: float
    exhausted: str = ""  # the pruner could not reach the ratio, and why

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for the report."""
        return {**asdict(self), "metric": round(self.metric, 6),
                "seconds": round(self.seconds, 2), "verdict": "pass" if self.passed else "fail"}


@dataclass
class RatioSearch:
    """Every ratio tried, in order, and why the search stopped."""

    trials: list[RatioTrial] = field(default_factory=list)
    stop: str = ""

    def passing(self) -> list[float]:
        """The ratios whose student passed, highest first."""
        return sorted((t.ratio for t in self.trials if t.passed), reverse=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for the report's search section."""
        return {"trials": [t.to_dict() for t in self.trials], "stop": self.stop,
                "passing": self.passing()}


def next_ratio(cfg: AdaptiveConfig, last_pass: float, first_fail: float | None
               ) -> tuple[float | None, str]:
    """The next ratio to try and the kind of step, or (None, why the search ends)."""
    if first_fail is None:
        if last_pass >= cfg.max_ratio:
            return None, f"reached max_ratio {cfg.max_ratio:g} within tolerance"
        if last_pass == 0:
            return cfg.first, START
        return round(min(1 - (1 - last_pass) * cfg.keep_factor, cfg.max_ratio), 4), STEP_UP
    if first_fail - last_pass <= cfg.resolution + 1e-9:
        return None, (f"bisected to {last_pass:g} (pass) / {first_fail:g} (fail), within "
                      f"resolution {cfg.resolution:g}")
    return round((last_pass + first_fail) / 2, 4), BISECT


def search_ratios(cfg: AdaptiveConfig, students: Students, judge: Callable[[Student], float],
                  floor: float, budget: Budget) -> RatioSearch:
    """Try ratios as the module docstring says; ``judge`` scores a student (selection split),
    a student passes when its score is at least ``floor``."""
    result = RatioSearch()
    result.trials.append(RatioTrial(0.0, START, None, judge(students.get(0.0)), True, 0.0))
    last_pass, first_fail, used, last_cost = 0.0, None, 0.0, 0.0
    share = budget.total_s * cfg.student_share
    longer: set[float] = set()
    while True:
        ratio, step = next_ratio(cfg, last_pass, first_fail)
        if ratio is None and first_fail is not None and cfg.distill_longer \
                and first_fail not in longer:
            ratio, exhausted = first_fail, step
            if budget.allows(share, used, last_cost * cfg.min_fit):
                longer.add(ratio)
                trial = _try(students, judge, ratio, last_pass, LONGER, floor, budget,
                             share - used)
                result.trials.append(trial)
                used, last_cost = used + trial.seconds, trial.seconds
                if trial.passed:  # on above it, up to the lowest ratio that failed there
                    last_pass = ratio
                    first_fail = min((t.ratio for t in result.trials
                                      if not t.passed and t.ratio > ratio), default=None)
                    continue
                result.stop = f"{exhausted}; r{ratio:g} distilled longer still fails"
                break
            result.stop = f"{exhausted}; no time left to distil r{ratio:g} longer"
            break
        if ratio is None:
            result.stop = step
            break
        if len(result.trials) > cfg.max_students:
            result.stop = f"tried max_students={cfg.max_students} pruned students"
            break
        if not budget.allows(share, used, last_cost * cfg.min_fit):
            result.stop = (f"time budget: the student search's share ({share:.0f} s of "
                           f"{budget.total_s:.0f} s) would be exceeded by ratio {ratio:g}")
            budget.stopped(result.stop)
            break
        trial = _try(students, judge, ratio, last_pass, step, floor, budget, share - used)
        result.trials.append(trial)
        used, last_cost = used + trial.seconds, trial.seconds
        if trial.passed and trial.exhausted:  # a higher ratio would be the same student
            result.stop = f"the prune ratio is exhausted: {trial.exhausted}"
            break
        if trial.passed:
            last_pass = ratio
        else:
            first_fail = ratio
    progress.note(f"prune search: {', '.join(_shown(t) for t in result.trials)}; "
                  f"stopped: {result.stop}")
    return result


def _try(students: Students, judge: Callable[[Student], float], ratio: float, base: float,
         step: str, floor: float, budget: Budget, share_left: float) -> RatioTrial:
    start = budget.clock()

    def time_left() -> float:
        return min(share_left - (budget.clock() - start), budget.left())

    with budget.phase("distill"):
        student = (students.distill_longer(ratio, time_left) if step == LONGER
                   else students.grow(ratio, base, time_left))
    with budget.phase("evaluate"):
        metric = judge(student)
    return RatioTrial(ratio, step, student.parent or "original", metric, metric >= floor,
                      budget.clock() - start, student.steps.get("prune", {}).get("exhausted", ""))


def _shown(trial: RatioTrial) -> str:
    return f"r{trial.ratio:g} {trial.metric:.4f} {'pass' if trial.passed else 'fail'}"
