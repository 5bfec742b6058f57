"""``edgekit build`` with bad input: each mistake is one line on stderr and exit status 1."""

from __future__ import annotations

import torch

from tests.cli import run_main

TINY = "tests/compress/tiny.py"


def build(tmp_path, keypair, *extra, model=f"{TINY}:tiny_model", data=f"{TINY}:tiny_data",
          profile="x86-64"):
    return run_main("build", "--model", model, "--data", data, "--profile", profile,
                    "--key", keypair[0], "-o", tmp_path / "out", "--no-progress", *extra)


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_factory_that_fails(tmp_path, keypair, capsys):
    assert build(tmp_path, keypair, model=f"{TINY}:broken_factory") == 1
    assert "model factory tests/compress/tiny.py:broken_factory raised ValueError" in \
        error_line(capsys)


def test_weights_that_do_not_match(tmp_path, keypair, capsys):
    weights = tmp_path / "w.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, weights)
    assert build(tmp_path, keypair, "--weights", weights) == 1
    assert "do not fit" in error_line(capsys)


def test_data_function_of_the_wrong_shape(tmp_path, keypair, capsys):
    assert build(tmp_path, keypair, data=f"{TINY}:wrong_shape_data") == 1
    assert "must yield (inputs, labels)" in error_line(capsys)


def test_unknown_profile(tmp_path, keypair, capsys):
    assert build(tmp_path, keypair, profile="rpi9") == 1
    assert "unknown profile 'rpi9'" in error_line(capsys)


def test_recipe_with_a_typo(tmp_path, keypair, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("distill:\n  epoch: 3\n")
    assert build(tmp_path, keypair, "--recipe", recipe) == 1
    assert "field 'distill.epoch': unknown field; did you mean 'epochs'?" in error_line(capsys)


def test_bad_tolerance(tmp_path, keypair, capsys):
    assert build(tmp_path, keypair, "--tolerance", "lots") == 1
    assert "--tolerance 'lots' is not a number" in error_line(capsys)


def test_missing_key(tmp_path, capsys):
    assert build(tmp_path, (tmp_path / "nope.pem", None)) == 1
    error_line(capsys)


def test_nothing_within_tolerance_exits_1_with_the_table(tmp_path, keypair, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("prune: {enabled: false}\nquantize: {precisions: [int8]}\n"
                      "search: {formats: [onnx], latency_runs: 10}\n")
    assert build(tmp_path, keypair, "--recipe", recipe, "--tolerance", "0",
                 data=f"{TINY}:strict_data") == 1
    captured = capsys.readouterr()
    assert "none" in captured.out and "x86-64" in captured.out
    err = captured.err.strip()
    assert err.startswith("error: no bundle for x86-64") and "\n" not in err
    assert (tmp_path / "out" / "report.json").exists()
