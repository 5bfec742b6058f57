"""`edgekit demo --task detection --size small`, as a user runs it, in a real process: the
digit-boxes detector through the whole loop (one trigger naming the dimmed devices, v2
fine-tuned on the labelled frames, the canary rollout promoted, mAP@0.5 on fresh shifted
frames recovered), summary.json and report.html written, no process left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.test_demo import ROOT, _processes_mentioning


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_detection_demo_runs_the_whole_loop(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "edgekit.cli.main", "demo", "--task",
                           "detection", "--size", "small", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1150,
                          env={**os.environ, "COLUMNS": "200"})
    summary = json.loads((out / "summary.json").read_text())
    failed = {k: v for k, v in summary["stages"].items() if v["status"] != "ok"}
    assert done.returncode == 0 and not failed, "\n".join(
        [json.dumps(failed), done.stdout[-3000:], done.stderr[-2000:]])
    stages = summary["stages"]
    assert list(stages) == ["keys", "train", "build", "fleet", "baseline", "drift", "retrain",
                            "rollout", "recovery", "report"]
    assert stages["baseline"]["triggers"] == 0 and stages["recovery"]["triggers"] == 1
    assert set(stages["drift"]["devices_affected"]) == {"pi-kitchen", "jetson-dock"}
    assert stages["retrain"]["samples"]["labelled"] > 0
    assert set(stages["rollout"]["versions"].values()) == {"2"}
    rec = stages["recovery"]
    before, after, baseline = (rec["map50_shifted_before"], rec["map50_shifted"],
                               rec["map50_shifted_baseline"])
    assert before < baseline - 0.2, "the shift must hurt detection"
    assert after >= 0.8 or after - before >= 0.8 * (baseline - before), rec
    marks = [e["mark"] for e in summary["timeline"] if "mark" in e]
    assert marks == ["shift", "trigger", "rollout", "done", "recovered"]
    page = (out / "report.html").read_text()
    assert "{'" not in page and "Every stage ok" in page and "mAP@0.5" in page
    assert "Example frame: v1 and v2 on the same shifted frame" in page
    assert page.count("data:image/png;base64,") == 2
    assert sorted(stages["retrain"]["bundles"]) == [f"{p}/digit-boxes-2.ekb" for p in
                                                    ("jetson-orin-nano", "rpi4", "x86-64")]
    assert _processes_mentioning(str(out)) == []
