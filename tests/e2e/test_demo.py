"""`make demo` at small size, as a user runs it: `edgekit demo --size small --out DIR` in a
real process. The whole loop must go through (one trigger, v2 on every device, accuracy
recovered), write summary.json and report.html, and leave no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and int(pid) != os.getpid():
            found.append(f"{pid}: {cmdline[:120]}")
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_demo_runs_the_whole_loop(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "edgekit.cli.main", "demo", "--size", "small",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=880, env={**os.environ, "COLUMNS": "200"})
    summary = json.loads((out / "summary.json").read_text())
    failed = {k: v for k, v in summary["stages"].items() if v["status"] != "ok"}
    assert done.returncode == 0 and not failed, "\n".join(
        [json.dumps(failed), done.stdout[-3000:], done.stderr[-2000:]])
    stages = summary["stages"]
    assert list(stages) == ["keys", "train", "build", "fleet", "baseline", "drift", "retrain",
                            "rollout", "recovery", "report"]
    assert stages["baseline"]["triggers"] == 0 and stages["recovery"]["triggers"] == 1
    assert stages["fleet"]["acl_enforced"]
    assert set(stages["drift"]["devices_affected"]) == {"pi-kitchen", "jetson-dock"}
    assert stages["retrain"]["samples"]["labelled"] > 0
    assert set(stages["rollout"]["versions"].values()) == {"2"}
    assert stages["recovery"]["accuracy_shifted"] > stages["drift"]["accuracy_shifted"] + 0.3
    marks = [e["mark"] for e in summary["timeline"] if "mark" in e]
    assert marks == ["shift", "trigger", "rollout", "done", "recovered"]
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 6 and page.count("<polyline") >= 12
    assert "{'" not in page and "Every stage ok" in page
    assert "Build candidates (v2)" in page
    assert '<div class="sub"><b>jetson-orin-nano</b> format onnx' in page  # one line each
    assert sorted(stages["retrain"]["bundles"]) == [f"{p}/digits-2.ekb" for p in
                                                    ("jetson-orin-nano", "rpi4", "x86-64")]
    assert "the whole loop" in done.stdout and "every stage ok" in done.stdout
    assert _processes_mentioning(str(out)) == []
