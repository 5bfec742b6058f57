"""Every `edgekit` command a device user runs, through the installed console script.

These run on the build host with the rest of the suite, and on a real Python 3.9 with only
`edgekit[agent]` installed (.ci/py39.sh): there, nothing beyond the agent extra is
installed (no torch, no onnx: the tiny models come prebuilt from the build host through
$EDGEKIT_TEST_ONNX and $EDGEKIT_TEST_TFLITE), so a command that needs more fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgekit.local_broker import free_port

# The console script pip installed beside this interpreter (a device user's `edgekit`).
EDGEKIT = Path(sys.executable).with_name("edgekit")
FORMATS = {"onnx": ("tiny_onnx", "x86-64"), "tflite": ("tiny_tflite", "rpi4")}


def edgekit(*args: object, cwd: Path | None = None, timeout: float = 120) -> str:
    """Run ``edgekit ARGS``; its stdout, after asserting it exited 0 without a traceback."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COLUMNS")}
    done = subprocess.run([str(EDGEKIT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**env, "COLUMNS": "200"})
    assert done.returncode == 0, f"edgekit {args}: {done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    """(private, public) made by `edgekit keys generate`."""
    out = tmp_path_factory.mktemp("keys")
    assert "public key" in edgekit("keys", "generate", "--out", out)
    private, public = sorted(out.iterdir(), key=lambda p: "pub" in p.name)
    return private, public


@pytest.fixture(scope="module", params=sorted(FORMATS))
def packed(request, keys, tmp_path_factory) -> tuple[str, Path]:
    """(format, bundle) packed by `edgekit bundle pack` from a tiny real model."""
    fmt = request.param
    fixture, profile = FORMATS[fmt]
    model = request.getfixturevalue(fixture)
    out = tmp_path_factory.mktemp("bundles") / f"tiny-{fmt}.ekb"
    said = edgekit("bundle", "pack", model, "--profile", profile, "--name", "tiny",
                   "--version", "3", "--key", keys[0], "-o", out)
    assert f"wrote {out}" in said and f"for {profile} ({fmt}/fp32)" in said
    return fmt, out


def test_profiles_list_names_every_builtin_profile():
    table = edgekit("profiles", "list")
    docs = json.loads(edgekit("profiles", "list", "--json"))
    names = {d["name"] for d in docs}
    assert {"rpi4", "rpi5", "rpi-zero-2w", "jetson-nano", "jetson-orin-nano", "x86-64"} <= names
    assert all(name in table for name in names)


def test_profiles_show_rpi4():
    assert "rpi4" in edgekit("profiles", "show", "rpi4")
    doc = json.loads(edgekit("profiles", "show", "rpi4", "--json"))
    assert doc["name"] == "rpi4" and doc["targets"][0]["format"] == "tflite"
    assert doc["cpu"]["freq_mhz"] is None or doc["cpu"]["freq_mhz"] >= 100


def test_bundle_inspect_shows_the_packed_manifest(packed):
    fmt, bundle = packed
    doc = json.loads(edgekit("bundle", "inspect", bundle, "--json"))
    assert doc["model"] == {**doc["model"], "name": "tiny", "version": "3"}
    assert doc["target"]["format"] == fmt and doc["created_at"].endswith("+00:00")
    assert "tiny" in edgekit("bundle", "inspect", bundle)


def test_bundle_verify_checks_signature_and_golden_output(packed, keys):
    _fmt, bundle = packed
    assert edgekit("bundle", "verify", bundle, "--pubkey", keys[1]).startswith("ok: ")
    said = edgekit("bundle", "verify", bundle, "--pubkey", keys[1], "--run")
    assert "golden check passed" in said


def test_agent_selftest_runs_the_bundle_here(packed, keys):
    fmt, bundle = packed
    said = edgekit("agent", "selftest", "--bundle", bundle, "--pubkey", keys[1])
    assert said.startswith("ok: tiny v3 runs here on "), said
    assert ("litert" in said or "tflite" in said) if fmt == "tflite" else "onnx" in said.lower()


def test_agent_run_serves_predictions_and_stops_on_sigterm(packed, keys, tmp_path):
    _fmt, bundle = packed
    port = free_port()
    proc = subprocess.Popen(
        [str(EDGEKIT), "agent", "run", "--bundle", str(bundle), "--pubkey", str(keys[1]),
         "--device-id", "py39-dev", "--fleet", "smoke", "--state-dir", str(tmp_path / "state"),
         "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, proc)
        x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
        body = json.dumps({"input": x.tolist()}).encode()
        req = urllib.request.Request(base + "/v1/predict", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            probs = np.asarray(json.loads(resp.read())["outputs"][0])
        assert probs.shape == (1, 10) and abs(float(probs.sum()) - 1.0) < 1e-3
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    assert "serving tiny v3" in out and "Traceback" not in out, out[-3000:]


def _wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the agent's HTTP API did not come up")


def test_agent_selftest_of_a_detector_judges_its_detections(keys, tmp_path):
    pytest.importorskip("torch", reason="the detector is exported here (build host only)")
    from tests.export.foreign_detectors import export_foreign

    model = export_foreign("yolov8", tmp_path / "det.onnx")
    out = tmp_path / "det.ekb"
    edgekit("bundle", "pack", model, "--profile", "x86-64", "--name", "det", "--version", "1",
            "--key", keys[0], "-o", out, "--task", "detection", "--layout", "yolov8")
    said = edgekit("agent", "selftest", "--bundle", out, "--pubkey", keys[1])
    assert said.startswith("ok: det v1 runs here on "), said
