"""End to end: train the digits baseline, ``edgekit build`` it for two profiles with the
default recipe (the adaptive prune search), and prove on this machine's runtimes what the
device would see, on the gate split the search never selected on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_agent.bundle import open_bundle, trusted_keys
from edge_agent.model import LoadedModel
from edgekit.cli.main import app

pytestmark = pytest.mark.slow
PROFILES = ("x86-64", "rpi4")


@pytest.fixture(scope="module")
def built(tmp_path_factory, keypair):
    from examples.digits.train import train_baseline

    work = tmp_path_factory.mktemp("digits")
    weights, accuracy = train_baseline("small_cnn", work / "weights.pt")
    assert accuracy >= 0.95
    args = ["build", "--model", "examples/digits/models.py:small_cnn", "--weights", weights,
            "--data", "examples/digits/data.py:data", "--key", keypair[0], "-o", work / "out",
            "--name", "digits", "--version", "2", "--parent-version", "1"]
    for profile in PROFILES:
        args += ["--profile", profile]
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return work / "out", result.output


def test_summary_and_report(built):
    out, output = built
    assert "edgekit build" in output and "report:" in output
    doc = json.loads((out / "report.json").read_text())
    assert set(doc["profiles"]) == set(PROFILES)
    for name, profile in doc["profiles"].items():
        assert profile["status"] == "ok" and profile["bundle"].endswith(f"{name}/digits-2.ekb")
        assert profile["metric"] >= profile["baseline_metric"] - 0.01
        assert profile["latency_ms"] < profile["baseline_latency_ms"]
        assert profile["size_bytes"] < profile["baseline_size_bytes"]
        assert profile["prune_ratio"] in doc["search"]["passing"]
    search = doc["search"]
    assert search["mode"] == "adaptive" and search["stop"]
    trials = search["trials"]
    assert [t["ratio"] for t in trials[:2]] == [0.0, 0.5] and len(trials) >= 3
    assert max(search["passing"]) > 0.5  # it stepped past the old default's single ratio
    assert [s["key"] for s in doc["students"]][:2] == ["r0", "r0.5"]
    assert doc["students"][1]["prune"]["macs_after"] < doc["students"][1]["prune"]["macs_before"]
    assert doc["splits"]["gate"] > 200 and "data:image/png;base64," in (
        out / "report.html").read_text()


@pytest.mark.parametrize("profile", PROFILES)
def test_bundle_verifies_and_scores_like_the_report_on_the_device_path(built, keypair,
                                                                      profile):
    from compress.splits import selection_and_gate
    from examples.digits.data import splits

    out, _ = built
    doc = json.loads((out / "report.json").read_text())["profiles"][profile]
    result = CliRunner().invoke(app, ["bundle", "verify", str(out / profile / "digits-2.ekb"),
                                      "--pubkey", str(keypair[1]), "--run"])
    assert result.exit_code == 0 and "golden check passed" in result.output
    gate = selection_and_gate(*splits()["validation"], seed=0)  # what the build gated on
    val_x, val_y = gate.gate_x, gate.gate_y
    with open_bundle(out / profile / "digits-2.ekb", trusted_keys([keypair[1]])) as opened:
        model = LoadedModel.load(opened)
        batch = 1 if opened.manifest.inputs[0].shape[0] == 1 else len(val_x)
        outputs = np.concatenate([model.predict(val_x[i:i + batch].numpy())[0]
                                  for i in range(0, len(val_x), batch)])
        manifest = opened.manifest
    accuracy = float((outputs.argmax(1) == val_y.numpy()).mean())
    assert accuracy == pytest.approx(doc["metric"], abs=1e-6)
    assert manifest.target.format == doc["format"] and manifest.lineage.parent_version == "1"
    assert manifest.preprocessing.layout == "NCHW" and manifest.labels[3] == "3"
