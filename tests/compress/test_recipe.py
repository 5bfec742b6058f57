"""Recipes: typed, validated, round-trip through JSON, one-line errors naming the field."""

from __future__ import annotations

import pytest

from compress.errors import RecipeError
from compress.recipe import Recipe, load_recipe
from compress.techniques import check_names


def test_default_recipe_round_trips_through_json():
    recipe = Recipe()
    assert Recipe.from_json(recipe.to_json()) == recipe
    assert recipe.version == 1 and recipe.prune.candidate_ratios() == [0.0, 0.5]


def test_yaml_recipe_fixes_and_bounds_steps(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nprune:\n  ratio_range: {min: 0.3, max: 0.7, count: 3}\n"
                    "distill: {epochs: 2, temperature: 2}\nquantize: {precisions: [int8]}\n"
                    "search: {formats: [onnx]}\n")
    recipe = load_recipe(path)
    assert recipe.prune.candidate_ratios() == [0.3, 0.5, 0.7]
    assert recipe.quantize.precisions == ["int8"] and recipe.search.formats == ["onnx"]
    assert Recipe.from_json(recipe.to_json()) == recipe


def test_no_pruning_means_ratio_zero_only():
    recipe = Recipe.from_dict({"prune": {"enabled": False, "ratios": [0.5, 0.7]}})
    assert recipe.prune.candidate_ratios() == [0.0]


def test_empty_file_is_the_default_recipe(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_recipe(path) == Recipe()


@pytest.mark.parametrize("text, expected", [
    ("distill:\n  temprature: 3\n",
     "field 'distill.temprature': unknown field; did you mean 'temperature'?"),
    ("prune: {ratios: [1.5]}\n", "field 'prune.ratios'"),
    ("quantize: {precisions: [int4]}\n", "field 'quantize.precisions.0'"),
    ("version: 2\n", "field 'version'"),
    ("pruen: {}\n", "did you mean 'prune'?"),
    ("- a\n- b\n", "expected a mapping"),
    ("prune: [\n", "cannot read YAML"),
])
def test_bad_recipe_is_one_line_naming_the_field(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert expected in message and "\n" not in message and str(path) in message


def test_registry_names_are_checked_before_work():
    recipe = Recipe.from_dict({"distill": {"schedule": "cosin"}})
    with pytest.raises(RecipeError, match=r"field 'distill.schedule': unknown 'cosin'; known: "):
        check_names(recipe)


def test_bad_json_names_the_field():
    with pytest.raises(RecipeError, match=r"field 'search\.latency_runs'"):
        Recipe.from_json('{"search": {"latency_runs": 1}}')


def test_missing_recipe_file_is_one_line(tmp_path):
    with pytest.raises(RecipeError, match="cannot read YAML"):
        load_recipe(tmp_path / "nope.yaml")
