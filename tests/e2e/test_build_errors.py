"""``edgekit build`` with bad input: each mistake is one line on stderr and exit status 1."""

from __future__ import annotations

import pytest
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


def test_metric_that_raises(tmp_path, keypair, capsys):
    assert build(tmp_path, keypair, data=f"{TINY}:raising_metric_data") == 1
    err = capsys.readouterr().err.strip()
    assert "the metric raised KeyError" in err and "\n" not in err


def test_nan_metric_ships_nothing(tmp_path, keypair, capsys):
    assert build(tmp_path, keypair, data=f"{TINY}:nan_metric_data") == 1
    assert "finite number" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*/*.ekb"))


def test_output_path_that_is_a_file_fails_first(tmp_path, keypair, capsys):
    (tmp_path / "out").write_text("not a folder")
    assert build(tmp_path, keypair) == 1
    assert "is a file" in capsys.readouterr().err


@pytest.mark.slow
def test_a_quantizer_that_crashes_fails_its_candidate_not_the_build(tmp_path, keypair,
                                                                   monkeypatch):
    import json

    import onnxruntime.quantization as ortq

    def broken(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : calibration failed")

    monkeypatch.setattr(ortq, "quantize_static", broken)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("prune: {ratios: [0.0]}\ndistill: {enabled: false}\n"
                      "quantize: {precisions: [fp32, int8]}\nsearch: {formats: [onnx]}\n")
    assert build(tmp_path, keypair, "--recipe", recipe) == 0
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    int8 = [c for c in doc["profiles"]["x86-64"]["candidates"] if c["precision"] == "int8"]
    assert int8 and all(c["status"] == "failed" for c in int8)
    assert "calibration failed" in int8[0]["reason"]


def test_bad_time_budget(tmp_path, keypair, capsys):
    assert build(tmp_path, keypair, "--time-budget", "0") == 1
    assert "--time-budget 0.0 must be a positive number of seconds" in error_line(capsys)


def test_unreachable_measure_on_agent(tmp_path, keypair, capsys):
    from edgekit.local_broker import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert build(tmp_path, keypair, "--measure-on", url, profile="rpi4") == 1
    assert f"cannot reach the agent at {url}" in error_line(capsys)
