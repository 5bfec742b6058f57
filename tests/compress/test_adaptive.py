"""The adaptive prune search: steps up while the student passes, then bisects between the last
pass and the first fail, grows each student from the last that passed, and stops on its share
of the time budget (and says so)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from compress.adaptive import BISECT, LONGER, START, STEP_UP, next_ratio, search_ratios
from compress.budget import Budget
from compress.errors import CompressError
from compress.recipe import AdaptiveConfig, Recipe
from compress.techniques import Student


@dataclass
class FakeStudents:
    """Students whose metric falls past ``limit`` (``limit + gain`` once distilled longer);
    each grow or longer distillation costs ``cost`` seconds."""

    limit: float
    clock: list = field(default_factory=lambda: [0.0])
    cost: float = 1.0
    grown: list = field(default_factory=list)
    time_left: list = field(default_factory=list)
    gain: float = 0.0
    longer: list = field(default_factory=list)
    least: float = 1.0  # the pruner cannot reach ratios above this

    def distill_longer(self, ratio, time_left=None):
        self.clock[0] += self.cost
        self.longer.append(ratio)
        return Student(model=None, ratio=ratio)

    def get(self, ratio):
        return Student(model=None, ratio=ratio)

    def grow(self, ratio, base, time_left=None):
        self.time_left.append(time_left())
        self.clock[0] += self.cost
        self.grown.append((ratio, base))
        steps = {"prune": {"exhausted": f"ratio {ratio:g} asked, {self.least:g} reached: "
                                        "at their least"}} if ratio > self.least else {}
        return Student(model=None, ratio=ratio, parent=f"r{base:g}" if base else None,
                       steps=steps)

    def judge(self, student):
        limit = self.limit + (self.gain if student.ratio in self.longer else 0.0)
        return 0.95 if student.ratio <= limit else 0.80


def _run(students, cfg=None, budget_s=1000.0):
    budget = Budget(budget_s, clock=lambda: students.clock[0])
    result = search_ratios(cfg or AdaptiveConfig(), students, students.judge, 0.94, budget)
    return result, budget


def test_steps_up_while_passing_then_bisects_between_pass_and_fail():
    students = FakeStudents(limit=0.75)
    result, budget = _run(students)
    assert [t.ratio for t in result.trials] == [0.0, 0.5, 0.7, 0.82, 0.76, 0.73, 0.76]
    assert [t.step for t in result.trials] == [START, START, STEP_UP, STEP_UP, BISECT, BISECT,
                                               LONGER]
    assert [t.passed for t in result.trials] == [True, True, True, False, False, True, False]
    # each student grown from the last that passed
    assert students.grown == [(0.5, 0.0), (0.7, 0.5), (0.82, 0.7), (0.76, 0.7), (0.73, 0.7)]
    assert result.passing() == [0.73, 0.7, 0.5, 0.0]
    assert result.stop == ("bisected to 0.73 (pass) / 0.76 (fail), within resolution 0.04; "
                           "r0.76 distilled longer still fails")
    assert budget.spent["distill"] == 6.0 and not budget.stops
    assert result.to_dict()["trials"][3]["verdict"] == "fail"


def test_a_ratio_that_passes_when_distilled_longer_moves_the_search_on_above_it():
    students = FakeStudents(limit=0.75, gain=0.04)  # 0.76 passes once distilled longer
    result, _ = _run(students)
    steps = [(t.ratio, t.step, t.passed) for t in result.trials]
    assert steps[6] == (0.76, LONGER, True)
    # on above it, bisecting towards 0.82 (which failed before); each ratio that fails
    # within the resolution is distilled longer once
    assert steps[7:] == [(0.79, BISECT, False), (0.79, LONGER, True), (0.82, LONGER, False)]
    assert students.grown[-1] == (0.79, 0.76)  # grown from the student distilled longer
    assert result.passing()[0] == 0.79 and students.longer == [0.76, 0.79, 0.82]
    assert result.stop.endswith("r0.82 distilled longer still fails")


def test_distilling_longer_needs_time_left_and_can_be_turned_off():
    students = FakeStudents(limit=0.75, cost=100.0)
    result, _ = _run(students, budget_s=1000.0)  # a 500 s share: 5 students, none longer
    assert students.longer == [] and len(result.trials) == 6
    assert result.stop.endswith("within resolution 0.04; no time left to distil r0.76 longer")
    result, _ = _run(FakeStudents(limit=0.75), AdaptiveConfig(distill_longer=False))
    assert result.trials[-1].step == BISECT and result.stop.endswith("resolution 0.04")


def test_a_passing_student_the_pruner_could_not_shrink_further_ends_the_ratio_dimension():
    students = FakeStudents(limit=0.99, least=0.75)  # everything passes, 0.82 is 0.75 again
    result, _ = _run(students)
    assert [t.ratio for t in result.trials] == [0.0, 0.5, 0.7, 0.82]
    assert result.stop == ("the prune ratio is exhausted: ratio 0.82 asked, 0.75 reached: "
                           "at their least")
    assert result.to_dict()["trials"][3]["exhausted"].startswith("ratio 0.82 asked")


def test_a_first_failure_bisects_down_from_the_first_ratio():
    result, _ = _run(FakeStudents(limit=0.2))
    assert [t.ratio for t in result.trials][:3] == [0.0, 0.5, 0.25]
    assert result.passing()[-1] == 0.0 and max(result.passing()) < 0.2 + 1e-9


def test_passing_everything_stops_at_max_ratio():
    result, _ = _run(FakeStudents(limit=0.99), AdaptiveConfig(max_ratio=0.9))
    assert result.passing()[0] == 0.9 and "reached max_ratio 0.9" in result.stop


def test_budget_share_stops_the_search_and_is_recorded():
    students = FakeStudents(limit=0.99, cost=100.0)
    result, budget = _run(students, AdaptiveConfig(student_share=0.5), budget_s=250)
    # 25 s left of the 125 s share: under half (min_fit) of the last student's 100 s
    assert [t.ratio for t in result.trials] == [0.0, 0.5]
    assert "time budget" in result.stop and budget.stops == [result.stop]
    assert budget.to_dict()["phases_s"]["distill"] == 100.0


def test_each_student_is_given_what_is_left_of_the_search_share():
    students = FakeStudents(limit=0.99, cost=40.0)
    result, _ = _run(students, AdaptiveConfig(student_share=0.5), budget_s=200)
    # share 100 s: the first student may use all of it, each next one what is left, while
    # that is at least half (min_fit) of the last student's 40 s
    assert students.time_left == [100.0, 60.0, 20.0]
    assert [t.ratio for t in result.trials] == [0.0, 0.5, 0.7, 0.82]


def test_min_fit_says_how_much_of_the_last_students_time_must_be_left():
    students = FakeStudents(limit=0.99, cost=40.0)
    result, _ = _run(students, AdaptiveConfig(student_share=0.5, min_fit=1.0), budget_s=200)
    assert students.time_left == [100.0, 60.0]
    assert [t.ratio for t in result.trials] == [0.0, 0.5, 0.7]


def test_max_students_caps_the_search():
    result, _ = _run(FakeStudents(limit=0.99), AdaptiveConfig(max_students=2, max_ratio=0.99))
    assert len(result.trials) == 3 and "max_students=2" in result.stop


@pytest.mark.parametrize("last_pass, first_fail, expected", [
    (0.0, None, (0.5, START)), (0.5, None, (0.7, STEP_UP)), (0.7, 0.82, (0.76, BISECT))])
def test_next_ratio(last_pass, first_fail, expected):
    assert next_ratio(AdaptiveConfig(), last_pass, first_fail) == expected


def test_the_default_recipe_is_adaptive_and_a_ratio_list_is_not():
    assert Recipe().prune.adaptive_search
    listed = Recipe.from_dict({"prune": {"ratios": [0.0, 0.5]}})
    assert listed.prune.search == "list" and listed.prune.candidate_ratios() == [0.0, 0.5]
    ranged = Recipe.from_dict({"prune": {"ratio_range": {"min": 0.2, "max": 0.4}}})
    assert not ranged.prune.adaptive_search
    assert Recipe.from_json(Recipe().to_json()).prune.adaptive_search
    assert Recipe.from_json(listed.to_json()) == listed
    assert not Recipe.from_dict({"prune": {"enabled": False}}).prune.adaptive_search


def test_a_bad_budget_is_one_line():
    with pytest.raises(CompressError, match="--time-budget 0 must be a positive"):
        Budget(0)
