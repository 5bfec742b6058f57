"""The search's mixed-precision step, with a fake evaluator and hook: when it runs (int8
over the tolerance, or over half of it while a float candidate is the alternative), and
that its candidates are gated and ranked by latency like every other (a mixed file slower
than fp16 loses to fp16)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from compress.budget import Budget
from compress.recipe import Recipe
from compress.search import (
    CHOSEN,
    REJECTED,
    Candidate,
    MixedRun,
    Outcome,
    SearchPlan,
    mixed_floor,
    run_search,
)
from hardware_profiles import load_profiles
from tests.compress.test_search import FakeEvaluator, FakeStudents

PROFILES = load_profiles()
RPI5 = PROFILES["rpi5"]  # tflite int8, onnx int8, tflite fp16, tflite fp32, onnx fp32


def _outcome(precision: str, metric: float) -> Outcome:
    index, target = next((i, t) for i, t in enumerate(RPI5.targets)
                         if t.precision == precision)
    return Outcome(Candidate(0.0, index, "m", target), metric=metric)


@pytest.mark.parametrize(("int8", "fp16", "floor"), [
    (0.90, None, 0.94),   # over the tolerance: reach the tolerance
    (0.945, 0.95, 0.945),  # over half of it, fp16 within: reach half of it
    (0.945, None, None),  # over half, but no float alternative: int8 stands
    (0.945, 0.90, None),  # the float candidate is outside tolerance too
    (0.948, 0.95, None),  # within half of the tolerance
])
def test_when_mixed_precision_runs(int8, fp16, floor):
    outcomes = [_outcome("int8", int8)] + ([_outcome("fp16", fp16)] if fp16 else [])
    need = mixed_floor(outcomes[0], outcomes, 0.95, 0.01)
    assert (need and round(need[0], 6)) == floor


def test_float_and_mixed_candidates_never_start_another_run():
    assert mixed_floor(_outcome("fp32", 0.5), [], 0.95, 0.01) is None
    mixed = _outcome("int8", 0.5)
    mixed.candidate = replace(mixed.candidate, keep_float=("a",))
    assert mixed_floor(mixed, [], 0.95, 0.01) is None


class MixedFake(FakeEvaluator):
    """Mixed candidates score ``mixed_metric`` and take ``mixed_ms``."""

    mixed_metric, mixed_ms = 0.95, 1.0

    def accuracy(self, candidate, student):
        outcome = super().accuracy(candidate, student)
        if candidate.keep_float:
            outcome.metric = self.mixed_metric
        return outcome

    def latencies(self, outcomes):
        super().latencies(outcomes)
        for o in outcomes:
            if o.candidate.keep_float:
                o.latency_ms = self.mixed_ms


def _hook(calls, runs_left=None):
    def hook(candidate, student, floor, runs):
        calls.append((candidate.id, floor))
        if runs_left is not None:
            runs_left.append(runs)
        return MixedRun([replace(candidate, keep_float=("conv3",))], {"keep_float": ["conv3"]})
    return hook


FIGURES = {(0.0, "onnx", "int8"): (0.90, 0.5), (0.0, "tflite", "int8"): (0.90, 0.4),
           (0.0, "tflite", "fp16"): (0.95, 2.0), (0.0, "tflite", "fp32"): (0.95, 4.0),
           (0.0, "onnx", "fp32"): (0.95, 3.0)}


@pytest.mark.parametrize(("mixed_ms", "winner"), [(0.8, "mixed"), (2.5, "fp16")])
def test_mixed_candidates_are_ranked_by_latency_like_the_others(mixed_ms, winner):
    evaluator = MixedFake(FIGURES)
    evaluator.mixed_ms = mixed_ms
    calls = []
    result = run_search(RPI5, Recipe(), FakeStudents(), evaluator, 0.95, 0.01,
                        plan=SearchPlan(mixed=_hook(calls)))
    assert sorted(calls) == [("r0/onnx/int8/m", 0.94), ("r0/tflite/int8/m", 0.94)]
    full = [o for o in result.outcomes if o.candidate.precision == "int8"
            and not o.candidate.keep_float and o.candidate.ratio == 0]
    assert len(full) == 2 and all(o.status == REJECTED for o in full)
    chosen = result.chosen
    assert chosen.status == CHOSEN
    if winner == "mixed":
        assert chosen.candidate.keep_float == ("conv3",)
        assert chosen.candidate.id.endswith("/float1")
    else:
        assert chosen.candidate.precision == "fp16"
    assert [r["candidate"] for r in result.mixed_precision] == [c for c, _ in calls]


def test_no_hook_no_mixed_candidates():
    result = run_search(RPI5, Recipe(), FakeStudents(), MixedFake(FIGURES), 0.95, 0.01)
    assert not result.mixed_precision
    assert not any(o.candidate.keep_float for o in result.outcomes)


def test_each_run_gets_its_part_of_the_time_left():
    runs_left = []
    run_search(RPI5, Recipe(), FakeStudents(), MixedFake(FIGURES), 0.95, 0.01,
               plan=SearchPlan(mixed=_hook([], runs_left)))
    assert runs_left == [2, 1]  # both int8 targets need a run: a half, then the rest


def test_the_held_back_time_is_released_for_the_profiles_runs():
    budget = Budget(100.0, clock=lambda: 0.0)
    budget.reserve(30.0)
    assert budget.left() == 70.0
    seen = []

    def hook(candidate, student, floor, runs):
        seen.append(budget.left())

    run_search(RPI5, Recipe(), FakeStudents(), MixedFake(FIGURES), 0.95, 0.01,
               plan=SearchPlan(mixed=hook, budget=budget, reserve_s=20.0))
    assert seen == [90.0, 90.0] and budget.reserved_s == 10.0  # the rest: the next profile


def test_release_never_hands_back_more_than_was_held():
    budget = Budget(10.0, clock=lambda: 0.0)
    budget.reserve(50.0)
    assert budget.reserved_s == 10.0 and budget.left() == 0.0
    assert budget.release(4.0) == 4.0 and budget.release(100.0) == 6.0
    assert budget.left() == 10.0 and budget.release(1.0) == 0.0
