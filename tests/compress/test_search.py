"""The accuracy-gated search, with a fake evaluator: candidates follow the profile and recipe,
the fastest candidate within tolerance wins (not the first), and nothing outside tolerance
is ever chosen."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from compress.recipe import Recipe
from compress.search import (
    CHOSEN,
    FAILED,
    PASSED,
    REJECTED,
    Candidate,
    Outcome,
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

    def methods_for(self, fmt, precision):
        return list(self.methods)

    def accuracy(self, candidate, student):
        key = (candidate.ratio, candidate.format, candidate.precision)
        if key not in self.figures:
            return Outcome(candidate, status=FAILED, reason="tflite cannot express operator x")
        return Outcome(candidate, metric=self.figures[key][0], size_bytes=1000)

    def latencies(self, outcomes):
        for o in outcomes:
            c = o.candidate
            o.latency_ms = self.figures.get((c.ratio, c.format, c.precision), (0, 1.0))[1]


def _search(profile, figures, recipe=None, baseline=0.95, drop=0.01, refs=None):
    return run_search(PROFILES[profile], recipe or Recipe(), FakeStudents(),
                      FakeEvaluator(figures), baseline, drop, refs)


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
