"""The CLI: profiles, keys and bundles, as a user types them."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekit.cli.main import app
from tests.cli import run_main

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console():
    """Tables wrap at 80 columns when there is no terminal; tests read whole cells."""
    from edgekit.cli.output import console

    old = console.width
    console.width = 250
    yield
    console.width = old


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_profiles_list_table(monkeypatch):
    from edgekit.cli.output import console

    monkeypatch.setattr(console, "width", 80)
    result = run("profiles", "list")
    assert result.exit_code == 0
    for name in ("rpi4", "jetson-orin-nano", "x86-64"):
        assert name in result.stdout
    assert "…" not in result.stdout  # a narrow terminal wraps cells, never cuts them


def test_profiles_list_json():
    result = run("profiles", "list", "--json")
    names = [p["name"] for p in json.loads(result.stdout)]
    shipped = {"rpi4", "rpi5", "rpi-zero-2w", "jetson-nano", "jetson-orin-nano", "x86-64"}
    assert shipped <= set(names)


def test_profiles_show_json_and_table():
    doc = json.loads(run("profiles", "show", "jetson-nano", "--json").stdout)
    assert doc["name"] == "jetson-nano" and doc["targets"][0]["precision"] == "fp16"
    shown = run("profiles", "show", "jetson-orin-nano").stdout
    assert "TensorrtExecutionProvider" in shown and "…" not in shown and "['" not in shown


def test_profiles_dir_option(tmp_path):
    from hardware_profiles.loader import BUILTIN_DIR

    text = (BUILTIN_DIR / "x86-64.yaml").read_text().replace("name: x86-64", "name: lab-box")
    (tmp_path / "lab-box.yaml").write_text(text)
    result = run("profiles", "list", "--json", "--profiles-dir", tmp_path)
    assert "lab-box" in [p["name"] for p in json.loads(result.stdout)]


def test_unknown_profile_is_one_line_error(capsys):
    assert run_main("profiles", "show", "nope") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown profile 'nope'") and "\n" not in err


def test_keys_generate_writes_0600_private_key_and_refuses_overwrite(tmp_path, capsys):
    assert run("keys", "generate", "--out", tmp_path).exit_code == 0
    private = tmp_path / "edgekit_ed25519.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PUBLIC KEY" in (tmp_path / "edgekit_ed25519.pub.pem").read_bytes()
    before = private.read_bytes()
    assert run_main("keys", "generate", "--out", tmp_path) == 1
    assert "already exists" in capsys.readouterr().err
    assert private.read_bytes() == before


@pytest.mark.parametrize("fixture, fmt, profile", [
    ("tiny_onnx", "onnx", "x86-64"), ("tiny_tflite", "tflite", "rpi4")])
def test_pack_verify_inspect(request, tmp_path, keypair, fixture, fmt, profile):
    model: Path = request.getfixturevalue(fixture)
    out = tmp_path / "b.ekb"
    result = run("bundle", "pack", model, "--profile", profile, "--name", "tiny",
                 "--version", "3", "--key", keypair[0], "-o", out)
    assert result.exit_code == 0, result.output
    assert "fp32" in result.stdout
    verified = run("bundle", "verify", out, "--pubkey", keypair[1], "--run")
    assert verified.exit_code == 0 and "golden check passed" in verified.stdout
    shown = run("bundle", "inspect", out).stdout
    assert f"tiny v3 for profile {profile}: {fmt}/fp32 (" in shown and "{" not in shown
    doc = json.loads(run("bundle", "inspect", out, "--json").stdout)
    assert doc["target"]["format"] == fmt and doc["target"]["precision"] == "fp32"
    assert doc["inputs"][0]["dtype"] == "float32" and doc["outputs"][0]["shape"][-1] == 10
    assert doc["golden"]["atol"] > 0 and set(doc["files"]) >= {"model", "golden_input"}
    assert "tiny" in run("bundle", "inspect", out).stdout


def test_pack_refuses_a_format_the_profile_cannot_run(tmp_path, keypair, tiny_tflite, capsys):
    code = run_main("bundle", "pack", tiny_tflite, "--profile", "x86-64", "--name", "t",
                    "--version", "1", "--key", keypair[0], "-o", tmp_path / "b.ekb",
                    "--precision", "fp16")
    assert code == 1
    assert "runs tflite at int8, fp32, not fp16" in capsys.readouterr().err
    assert not (tmp_path / "b.ekb").exists()


def test_pack_refuses_unknown_file_type(tmp_path, keypair, capsys):
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    assert run_main("bundle", "pack", model, "--profile", "rpi4", "--name", "t", "--version",
                    "1", "--key", keypair[0], "-o", tmp_path / "b.ekb") == 1
    assert "unknown model file type" in capsys.readouterr().err


def test_pack_refuses_bad_version(tmp_path, keypair, tiny_onnx, capsys):
    assert run_main("bundle", "pack", tiny_onnx, "--profile", "x86-64", "--name", "t",
                    "--version", "v1-beta", "--key", keypair[0], "-o", tmp_path / "b.ekb") == 1
    assert "version 'v1-beta' is not valid" in capsys.readouterr().err


def test_verify_fails_with_one_line_for_wrong_key(tmp_path, keypair, other_keypair, tiny_onnx,
                                                  capsys):
    out = tmp_path / "b.ekb"
    run("bundle", "pack", tiny_onnx, "--profile", "x86-64", "--name", "t", "--version", "1",
        "--key", keypair[0], "-o", out)
    assert run_main("bundle", "verify", out, "--pubkey", other_keypair[1]) == 1
    err = capsys.readouterr().err.strip()
    assert "not trusted" in err and "\n" not in err


def test_pack_does_not_replace_a_good_bundle_on_failure(tmp_path, keypair, tiny_onnx):
    out = tmp_path / "b.ekb"
    run("bundle", "pack", tiny_onnx, "--profile", "x86-64", "--name", "t", "--version", "1",
        "--key", keypair[0], "-o", out)
    good = out.read_bytes()
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("nope")
    assert run_main("bundle", "pack", tiny_onnx, "--profile", "x86-64", "--name", "t",
                    "--version", "2", "--key", bad_key, "-o", out) == 1
    assert out.read_bytes() == good


def test_version_flag():
    assert run("--version").stdout.startswith("edgekit ")


@pytest.mark.parametrize("fixture, profile", [("tiny_onnx", "x86-64"), ("tiny_tflite", "rpi4")])
def test_pack_with_reference_data_records_reference_statistics(request, tmp_path, keypair,
                                                               fixture, profile, rng):
    """Models not built by edgekit get drift detection too."""
    import numpy as np

    data = rng.uniform(0, 1, (32, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "ref.npy", data)
    out = tmp_path / "b.ekb"
    result = run("bundle", "pack", request.getfixturevalue(fixture), "--profile", profile,
                 "--name", "tiny", "--version", "1", "--key", keypair[0], "-o", out,
                 "--reference-data", tmp_path / "ref.npy")
    assert result.exit_code == 0, result.output
    ref = json.loads(run("bundle", "inspect", out, "--json").stdout)["reference_stats"]
    assert ref["n"] == 32 and len(ref["input"]["per_channel"]) == 1
    assert sum(ref["input"]["per_channel"][0]) + ref["input"]["below"][0] + \
        ref["input"]["above"][0] == 32 * 64
    assert abs(sum(ref["output"]["class_distribution"]) - 1) < 1e-6


@pytest.mark.parametrize("content, error", [
    (b"not an array", "not a readable .npy"), (None, "has shape [4, 8, 8]")])
def test_pack_refuses_bad_reference_data(tmp_path, keypair, tiny_onnx, capsys, content, error):
    import numpy as np

    path = tmp_path / "ref.npy"
    if content is None:
        np.save(path, np.zeros((4, 8, 8), np.float32))
    else:
        path.write_bytes(content)
    assert run_main("bundle", "pack", tiny_onnx, "--profile", "x86-64", "--name", "t",
                    "--version", "1", "--key", keypair[0], "-o", tmp_path / "b.ekb",
                    "--reference-data", path) == 1
    err = capsys.readouterr().err
    assert error in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.ekb").exists()


def test_people_tables_fit_80_columns_and_never_cut_a_cell():
    from rich.console import Console

    from edgekit.cli.output import people_table

    table = people_table("device", "model", "last seen", "detail", keep=("device",))
    long = "update failed: sha256 mismatch: expected 4f1c... got 9a2e...; re-publish the bundle"
    table.add_row("jetson-orin-nano-017", "sim-model 12", "2026-12-01 21:12:00", long)
    console = Console(width=80, record=True)
    console.print(table)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in "".join(lines)
    assert "jetson-orin-nano-017" in lines[2]  # a kept column is not broken
    assert "".join(lines).replace(" ", "").count("re-publishthebundle") == 1
