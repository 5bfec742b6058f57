"""The accuracy-gated search, with a fake evaluator: candidates follow the profile and recipe,
the fastest candidate within tolerance wins (not the first), nothing outside tolerance is
ever chosen, profiles whose host timings do not stand for them keep their target order,
adaptive ratios are walked down only while needed, and the gate split has the last word."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from compress.budget import Budget
from compress.recipe import Recipe
from compress.search import (
    CHOSEN,
    FAILED,
    PASSED,
    REJECTED,
    SKIPPED,
    Candidate,
    Outcome,
    SearchPlan,
    enumerate_candidates,
    run_search,
)
from compress.techniques import Student
from hardware_profiles import load_profiles

PROFILES = load_profiles()


@dataclass
class FakeStudents:
    made: list = field(default_factory=list)

    def get(self, ratio):
        self.made.append(ratio)
        return Student(model=None, ratio=ratio)


@dataclass
class FakeEvaluator:
    """metric and latency per (ratio, format, precision); missing entries fail to export."""

    figures: dict
    methods: tuple = ("m",)
    threads: bool = False  # offer the profile's thread choices
    gate: dict = field(default_factory=dict)  # candidate id -> metric on the gate split
    thread_ms: dict = field(default_factory=dict)  # threads -> latency factor

    def methods_for(self, fmt, precision):
        return list(self.methods)

    def thread_options(self, target):
        return target.thread_options() if self.threads else [target.threads]

    def gate_metric(self, outcome):
        return self.gate.get(outcome.candidate.id, outcome.metric)

    def accuracy(self, candidate, student):
        key = (candidate.ratio, candidate.format, candidate.precision)
        if key not in self.figures:
            return Outcome(candidate, status=FAILED, reason="tflite cannot express operator x")
        return Outcome(candidate, metric=self.figures[key][0], size_bytes=1000)

    def latencies(self, outcomes):
        for o in outcomes:
            c = o.candidate
            factor = self.thread_ms.get(c.threads, 1.0)
            o.latency_ms = self.figures.get((c.ratio, c.format, c.precision), (0, 1.0))[1] * factor


def _search(profile, figures, recipe=None, baseline=0.95, drop=0.01, refs=None, plan=None,
            evaluator=None):
    return run_search(PROFILES[profile], recipe or Recipe(), FakeStudents(),
                      evaluator or FakeEvaluator(figures), baseline, drop, refs, plan)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_candidates_follow_the_profile_order(name):
    profile = PROFILES[name]
    candidates = enumerate_candidates(profile, Recipe(), FakeEvaluator({}))
    assert len(candidates) == 2 * len(profile.targets)
    order = [c.target_index for c in candidates]
    assert order == sorted(order)
    assert all(c.target is profile.targets[c.target_index] for c in candidates)


def test_recipe_filters_formats_precisions_and_ratios():
    recipe = Recipe.from_dict({"prune": {"ratios": [0.0, 0.3, 0.6]},
                               "quantize": {"precisions": ["int8"]},
                               "search": {"formats": ["onnx"]}})
    candidates = enumerate_candidates(PROFILES["rpi4"], recipe, FakeEvaluator({}))
    assert {(c.format, c.precision) for c in candidates} == {("onnx", "int8")}
    assert [c.ratio for c in candidates] == [0.0, 0.3, 0.6]
    capped = Recipe.from_dict({"search": {"max_candidates": 3}})
    assert len(enumerate_candidates(PROFILES["rpi4"], capped, FakeEvaluator({}))) == 3


def test_fastest_within_tolerance_wins_not_the_first():
    figures = {(0.0, "tflite", "int8"): (0.95, 2.0), (0.5, "tflite", "int8"): (0.945, 1.0),
               (0.0, "onnx", "int8"): (0.95, 1.5), (0.5, "onnx", "int8"): (0.90, 0.5),
               (0.0, "tflite", "fp32"): (0.95, 4.0), (0.5, "tflite", "fp32"): (0.95, 3.0),
               (0.0, "onnx", "fp32"): (0.95, 4.0), (0.5, "onnx", "fp32"): (0.95, 3.0)}
    result = _search("rpi4", figures)
    assert result.chosen.candidate.id == "r0.5/tflite/int8/m"
    assert result.chosen.status == CHOSEN
    fastest = next(o for o in result.outcomes if o.candidate.id == "r0.5/onnx/int8/m")
    assert fastest.status == REJECTED and "tolerance allows 0.0100" in fastest.reason
    passed = [o for o in result.outcomes if o.status == PASSED]
    assert passed and all("latency of the chosen" in o.reason for o in passed)


def test_nothing_within_tolerance_chooses_nothing():
    figures = {(r, f, p): (0.5, 1.0) for r in (0.0, 0.5) for f in ("onnx", "tflite")
               for p in ("int8", "fp32")}
    result = _search("x86-64", figures)
    assert result.chosen is None
    assert all(o.status == REJECTED for o in result.outcomes)


def test_export_failures_are_kept_with_their_reason():
    figures = {(0.0, "onnx", "int8"): (0.95, 1.0), (0.5, "onnx", "int8"): (0.95, 0.8)}
    result = _search("x86-64", figures)
    failed = [o for o in result.outcomes if o.status == FAILED]
    assert failed and all("cannot express operator" in o.reason for o in failed)
    assert result.chosen.candidate.id == "r0.5/onnx/int8/m"


def test_size_limit_rejects(monkeypatch):
    figures = {(0.0, "tflite", "int8"): (0.95, 1.0)}
    profile = PROFILES["rpi-zero-2w"]
    tiny_limit = profile.limits.model_copy(update={"max_model_mb": 0.0005})
    monkeypatch.setitem(PROFILES, "tiny", profile.model_copy(update={"limits": tiny_limit}))
    result = _search("tiny", figures)
    assert result.chosen is None
    assert any("exceeds the profile's limit" in o.reason for o in result.outcomes)


def test_references_are_timed_but_never_chosen():
    target = PROFILES["x86-64"].targets[2]
    ref = Candidate(0.0, 2, "float", target)
    figures = {(0.0, "onnx", "fp32"): (0.99, 0.1), (0.0, "onnx", "int8"): (0.95, 1.0)}
    result = _search("x86-64", figures, refs=[ref])
    assert result.references[0].status == "reference"
    assert result.reference_for("onnx").latency_ms == 0.1
    assert result.chosen.candidate.precision == "fp32"  # the candidate, not the reference


def test_a_nan_metric_never_passes_the_gate():
    import math

    from compress.search import REJECTED, gate

    outcome = type("O", (), {})()
    outcome.status, outcome.reason, outcome.metric = None, "", math.nan
    outcome.size_bytes, outcome.latency_ms = 10, 1.0
    gate(outcome, baseline=0.9, allowed_drop=0.01, max_bytes=1e9)
    assert outcome.status == REJECTED and "not a number" in outcome.reason


def _every_target(ratios, metric=0.95, latency=1.0):
    return {(r, f, p): (metric, latency) for r in ratios for f in ("onnx", "tflite")
            for p in ("int8", "fp16", "fp32")}


def test_thread_counts_are_a_dimension_where_the_profile_lists_several():
    profile = PROFILES["rpi4"]
    evaluator = FakeEvaluator(_every_target([0.0]), threads=True, thread_ms={1: 0.5})
    candidates = enumerate_candidates(profile, Recipe.from_dict({"prune": {"ratios": [0.0]}}),
                                      evaluator)
    per_target = len(profile.targets[0].thread_options())
    assert per_target > 1 and len(candidates) == per_target * len(profile.targets)
    assert {c.target.threads for c in candidates} == {c.threads for c in candidates}
    result = _search("rpi4", _every_target([0.0, 0.5]), evaluator=evaluator)
    assert result.chosen.candidate.threads == 1 and result.chosen.candidate.id.endswith("/t1")
    assert result.chosen.candidate.target.threads == 1  # what the bundle will run with
    single = enumerate_candidates(PROFILES["jetson-orin-nano"], Recipe(), evaluator)
    assert all(c.threads is None for c in single)  # one count: ids and behaviour as before


def test_host_timings_that_do_not_stand_for_the_device_keep_the_target_order():
    figures = {(0.0, "onnx", "int8"): (0.95, 9.0), (0.5, "onnx", "int8"): (0.95, 8.0),
               (0.0, "onnx", "fp16"): (0.95, 1.0), (0.5, "onnx", "fp16"): (0.95, 0.5),
               (0.0, "tflite", "int8"): (0.95, 0.1), (0.5, "tflite", "int8"): (0.95, 0.1)}
    by_time = _search("jetson-orin-nano", figures)
    assert by_time.chosen.candidate.id == "r0.5/tflite/int8/m"  # host CPU's fastest
    ordered = _search("jetson-orin-nano", figures, plan=SearchPlan(selection="target_order"))
    assert ordered.chosen.candidate.id == "r0.5/onnx/int8/m"  # first target, highest ratio
    assert "do not rank" in ordered.chosen.reason
    later = next(o for o in ordered.outcomes if o.candidate.id == "r0.5/onnx/fp16/m")
    assert later.status == PASSED and "profile's order" in later.reason


def test_adaptive_ratios_step_down_only_while_outside_tolerance():
    figures = {(0.8, "onnx", "int8"): (0.90, 0.5), (0.5, "onnx", "int8"): (0.95, 0.8),
               (0.0, "onnx", "int8"): (0.95, 1.0), (0.8, "onnx", "fp32"): (0.95, 1.5),
               (0.5, "onnx", "fp32"): (0.95, 2.0), (0.0, "onnx", "fp32"): (0.95, 3.0)}
    recipe = Recipe.from_dict({"search": {"formats": ["onnx"]}})
    result = _search("x86-64", figures, recipe, plan=SearchPlan(ratios=[0.0, 0.5, 0.8]))
    tried = sorted(o.candidate.id for o in result.outcomes)
    assert tried == ["r0.5/onnx/int8/m", "r0.8/onnx/fp32/m", "r0.8/onnx/int8/m"]
    assert result.chosen.candidate.id == "r0.5/onnx/int8/m"


def test_the_gate_split_has_the_last_word():
    figures = {(0.0, "onnx", "int8"): (0.95, 1.0), (0.5, "onnx", "int8"): (0.95, 0.5)}
    evaluator = FakeEvaluator(figures, gate={"r0.5/onnx/int8/m": 0.80})
    plan = SearchPlan(final=evaluator.gate_metric, gate_baseline=0.96)
    result = _search("x86-64", figures, plan=plan, evaluator=evaluator)
    fastest = next(o for o in result.outcomes if o.candidate.id == "r0.5/onnx/int8/m")
    assert fastest.status == REJECTED and "gate split gives 0.8000" in fastest.reason
    assert result.chosen.candidate.id == "r0/onnx/int8/m"
    assert result.chosen.gate_metric == 0.95 and result.gate_baseline == 0.96


def test_a_spent_budget_skips_the_rest_and_says_so():
    clock = iter(range(0, 10_000, 10))
    budget = Budget(100, clock=lambda: next(clock))
    figures = _every_target([0.0, 0.5])
    result = _search("x86-64", figures, Recipe.from_dict({"prune": {"ratios": [0.0, 0.5]}}),
                     plan=SearchPlan(budget=budget, share_s=15))
    skipped = [o for o in result.outcomes if o.status == SKIPPED]
    assert skipped and result.chosen is not None
    assert "time budget" in result.stop and budget.stops == [result.stop]
    assert all("time budget" in o.reason for o in skipped)


def test_when_the_gate_rejects_every_pruned_candidate_a_lower_ratio_is_tried():
    """Adaptive walk: r0.5 is within tolerance on the selection split, so r0 is never
    measured; the gate then rejects every r0.5 file. The build must step down, not give up."""
    figures = {(0.0, "onnx", "int8"): (0.95, 1.0), (0.5, "onnx", "int8"): (0.95, 0.5)}
    recipe = Recipe.from_dict({"search": {"formats": ["onnx"]}})
    evaluator = FakeEvaluator(figures, gate={"r0.5/onnx/int8/m": 0.80})
    plan = SearchPlan(ratios=[0.0, 0.5], final=evaluator.gate_metric, gate_baseline=0.96)
    result = _search("x86-64", figures, recipe, plan=plan, evaluator=evaluator)
    by_id = {o.candidate.id: o for o in result.outcomes}
    assert by_id["r0.5/onnx/int8/m"].status == REJECTED
    assert result.chosen is not None and result.chosen.candidate.id == "r0/onnx/int8/m"
    assert result.chosen.latency_ms == 1.0
