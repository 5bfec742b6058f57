"""Student techniques dispatch by config type; students are made once and shared."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from compress.evaluation import top1_accuracy
from compress.recipe import DistillConfig, PruneConfig, Recipe
from compress.techniques import STUDENT_STEPS, TECHNIQUES, StudentData, Students, make_student
from tests.compress.tiny import tiny_tensors


def _data(teacher, validation):
    train = DataLoader(TensorDataset(*tiny_tensors(64, 1)), batch_size=32)
    return StudentData(teacher, torch.randn(1, 1, 16, 16), train, validation, top1_accuracy)


def test_every_student_step_has_a_registered_handler():
    recipe = Recipe()
    for name in STUDENT_STEPS:
        assert type(getattr(recipe, name)) in TECHNIQUES
    assert {PruneConfig, DistillConfig} <= set(TECHNIQUES.keys())


def test_ratio_zero_student_is_the_teacher_unchanged(tiny_teacher, tiny_validation):
    student = make_student(Recipe(), _data(tiny_teacher, tiny_validation), 0.0)
    x = torch.randn(2, 1, 16, 16)
    assert not student.changed and student.steps == {}
    assert torch.allclose(student.model(x), tiny_teacher(x)) and student.key == "r0"


def test_pruned_student_is_distilled_and_cached(tiny_teacher, tiny_validation):
    recipe = Recipe.from_dict({"distill": {"epochs": 1}, "prune": {"round_to": None}})
    students = Students(recipe, _data(tiny_teacher, tiny_validation))
    first = students.get(0.5)
    assert first is students.get(0.5)
    assert set(first.steps) == {"prune", "distill"} and first.key == "r0.5"
    assert [s.ratio for s in students.made()] == [0.5]


def test_a_student_distilled_longer_is_the_same_student_trained_further(tiny_teacher,
                                                                        tiny_validation):
    recipe = Recipe.from_dict({"distill": {"epochs": 1}, "prune": {"round_to": None}})
    students = Students(recipe, _data(tiny_teacher, tiny_validation))
    first = students.get(0.5)
    before = top1_accuracy(first.model(tiny_validation[0]), tiny_validation[1])
    longer = students.distill_longer(0.5)
    assert longer is first and students.get(0.5) is first and not longer.model.training
    summary = longer.steps["distill_longer"]
    assert summary["history"][0]["metric"] == round(before, 5)  # from where it was
    assert summary["best_metric"] >= before  # its best epoch is kept


def test_disabled_distillation_only_prunes(tiny_teacher, tiny_validation):
    recipe = Recipe.from_dict({"distill": {"enabled": False}, "prune": {"round_to": None}})
    student = make_student(recipe, _data(tiny_teacher, tiny_validation), 0.5)
    assert set(student.steps) == {"prune"}


def test_a_student_does_not_depend_on_what_ran_before(tiny_teacher, tiny_validation):
    recipe = Recipe.from_dict({"distill": {"epochs": 1}, "prune": {"round_to": None}})
    first = make_student(recipe, _data(tiny_teacher, tiny_validation), 0.5)
    torch.rand(1000)  # other work consuming the random state
    second = make_student(recipe, _data(tiny_teacher, tiny_validation), 0.5)
    x = torch.randn(4, 1, 16, 16)
    assert torch.allclose(first.model(x), second.model(x))


def test_progressive_students_grow_from_the_next_lower_ratio(tiny_teacher, tiny_validation):
    recipe = Recipe.from_dict({"distill": {"epochs": 1},
                               "prune": {"ratios": [0.0, 0.3, 0.6], "round_to": None}})
    students = Students(recipe, _data(tiny_teacher, tiny_validation))
    last = students.get(0.6)  # makes 0.3 first, then prunes it further
    assert [s.key for s in students.made()] == ["r0.3", "r0.6"]
    assert last.parent == "r0.3" and last.steps["prune"]["from"] == "r0.3"
    assert last.steps["prune"]["achieved_reduction"] >= 0.6
    one_cut = Recipe.from_dict({**recipe.model_dump(), "prune": {
        **recipe.prune.model_dump(), "progressive": False}})
    direct = Students(one_cut, _data(tiny_teacher, tiny_validation)).get(0.6)
    assert direct.parent is None and direct.steps["prune"]["from"] == "original"


def test_grow_prunes_the_given_student_further(tiny_teacher, tiny_validation):
    recipe = Recipe.from_dict({"distill": {"epochs": 1}, "prune": {"round_to": None}})
    students = Students(recipe, _data(tiny_teacher, tiny_validation))
    base = students.grow(0.3, 0.0)
    grown = students.grow(0.65, 0.3)
    assert base.parent is None and grown.parent == "r0.3"
    assert grown.steps["prune"]["from"] == "r0.3" and students.get(0.65) is grown
    assert grown.steps["prune"]["achieved_reduction"] >= 0.65
