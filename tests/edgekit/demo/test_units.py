"""The demo's parts on their own: settings checks, shifts, the labelling stand-in, the
timeline's summary, the report's charts and cells."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_agent.errors import EdgekitError
from edgekit.demo.report import badge, fmt, stage_rows, svg_chart, table
from edgekit.demo.settings import DeviceSpec, for_size
from edgekit.demo.shifts import SHIFTS, apply
from edgekit.demo.stream import Labels, input_key
from edgekit.demo.tasks.classification import probabilities
from edgekit.demo.timeline import StageFailed, Timeline


def test_sizes_and_bad_settings(tmp_path):
    small = for_size("small", out=tmp_path)
    assert small.epochs and small.baseline_s < for_size("full", out=tmp_path).baseline_s
    assert small.profiles == ["rpi4", "jetson-orin-nano", "x86-64"]
    with pytest.raises(EdgekitError, match="unknown demo size 'huge'"):
        for_size("huge")
    with pytest.raises(EdgekitError, match="unknown shift 'blur' for the classification demo; "
                                           "choose one of invert, rotate, noise"):
        for_size("small", shift="blur")
    with pytest.raises(EdgekitError, match="at least 2 devices"):
        for_size("small", devices=(DeviceSpec("a", "x86-64", True),
                                   DeviceSpec("b", "x86-64", False),
                                   DeviceSpec("c", "x86-64", False)))
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgekitError, match="is a file"):
        for_size("small", out=tmp_path / "file")


@pytest.mark.parametrize("name", sorted(SHIFTS))
def test_shifts_are_deterministic_and_change_the_input(name):
    x = np.random.default_rng(0).normal(size=(4, 1, 32, 32)).astype(np.float32)
    a, b = apply(name, x, 0.3, 0.4, seed=1), apply(name, x, 0.3, 0.4, seed=1)
    assert a.dtype == np.float32 and a.shape == x.shape
    assert np.array_equal(a, b) and not np.allclose(a, x)


def test_invert_is_the_other_polarity():
    unit = np.linspace(0, 1, 32 * 32).reshape(1, 1, 32, 32)
    x = ((unit - 0.3) / 0.4).astype(np.float32)
    np.testing.assert_allclose(apply("invert", x, 0.3, 0.4) * 0.4 + 0.3, 1 - unit, atol=1e-5)


def test_labels_are_keyed_by_the_input_bytes(tmp_path):
    labels = Labels()
    x = np.arange(8, dtype=np.float32).reshape(1, 1, 2, 4)
    labels.add(x, 7)
    doc = json.loads(labels.save(tmp_path / "labels.json").read_text())
    assert doc == {input_key(x.reshape(8)): 7}  # the shape does not matter, the bytes do
    assert input_key(x + 1) not in doc


def test_probabilities_softmax_logits_only():
    probs = np.array([0.1, 0.9])
    assert np.array_equal(probabilities(probs), probs)
    logits = probabilities(np.array([1.0, -1.0, 3.0]))
    assert abs(logits.sum() - 1) < 1e-9 and logits.argmax() == 2


def test_timeline_stages_and_summary(tmp_path):
    tl = Timeline()
    with tl.stage("good") as fig:
        fig["accuracy"] = 0.97
    with pytest.raises(StageFailed), tl.stage("bad"):
        raise StageFailed("no trigger within 60 s")
    tl.log("drift", "[red]shift[/] on two devices", "shift")
    doc = json.loads(tl.write_summary(tmp_path / "summary.json").read_text())
    assert doc["stages"]["good"]["status"] == "ok" and doc["stages"]["good"]["accuracy"] == 0.97
    assert doc["stages"]["bad"] == {"status": "failed", "error": "no trigger within 60 s",
                                    "seconds": doc["stages"]["bad"]["seconds"]}
    assert not doc["ok"] and doc["timeline"][-1]["text"] == "shift on two devices"
    assert tl.at("shift") is not None


def test_cells_never_show_python_dicts():
    assert fmt({"pi": {"accuracy": 0.912345, "errors": 0}}) == "pi accuracy 0.9123; errors 0"
    assert fmt(["a", 1.0, None]) == "a, 1, –" and fmt(True) == "yes"
    page = table(["stage", "figures"], [["drift", {"devices": ["a", "b"]}], ["x", badge("ok")]])
    assert "{" not in page and "devices a, b" in page and 'class="badge ok"' in page
    assert "&lt;b&gt;" in table(["x"], [["<b>"]])  # text is escaped, badges are not


def test_a_stage_figure_per_profile_reads_one_line_per_profile():
    stages = {"build": {"status": "ok", "seconds": 9.0, "report": "r.html", "profiles": {
        "rpi4": {"format": "tflite", "metric": 0.98214}, "x86-64": {"format": "onnx"}}}}
    cells = table(["stage", "status", "seconds", "figures"], stage_rows(stages))
    assert '<div><b>profiles</b></div><div class="sub"><b>rpi4</b> format tflite; metric ' \
           '0.9821</div><div class="sub"><b>x86-64</b> format onnx</div>' in cells
    assert "<div><b>report</b> r.html</div>" in cells and "{" not in cells


def test_chart_draws_lines_marks_and_threshold():
    svg = svg_chart([("accuracy", "#000", [(0, 1.0), (10, 0.5)])], [(5, "shift", "#f00")],
                    20, 1.0, "dev: accuracy", threshold=0.8)
    assert svg.count("<polyline") == 1 and "shift" in svg and 'class="threshold"' in svg
    assert svg_chart([("none", "#000", [])], [], 0, 1.0, "empty").count("<polyline") == 0


def test_a_named_broker_that_does_not_answer_is_one_line(tmp_path):
    from edgekit.demo.fleet import DemoFleet
    from edgekit.local_broker import free_port

    fleet = DemoFleet(for_size("small", out=tmp_path, broker=f"mqtt://127.0.0.1:{free_port()}"),
                      tmp_path / "pub.pem")
    with pytest.raises(EdgekitError, match="does not answer; start it, or leave out --broker"):
        fleet.start_broker({})


class _Fleet:
    """Stands in for the running processes: Ctrl-C arrives while the demo keeps running."""

    procs = ("serve",)
    api, token_file, logs = "http://127.0.0.1:1", "token", "logs"

    def __init__(self, gone=()):
        self.calls, self.gone, self.stopped = 0, list(gone), False

    def alive(self):
        self.calls += 1
        if self.gone:
            return self.gone
        if self.calls > 1:
            raise KeyboardInterrupt
        return []

    def stop(self):
        self.stopped = True


@pytest.mark.parametrize(("gone", "status"), [((), 0), (("x86-lab",), 1)])
def test_keep_running_ends_with_ctrl_c_as_success_or_fails_when_a_process_dies(
        tmp_path, monkeypatch, gone, status):
    import edgekit.demo.run as run

    demo = run.Demo(for_size("small", out=tmp_path, keep_running=True))
    monkeypatch.setattr(run.Demo, "_stages", lambda self: None)
    monkeypatch.setattr(run.Demo, "report", lambda self: None)
    monkeypatch.setattr(run.time, "sleep", lambda s: None)
    monkeypatch.setattr(run.Demo, "shutdown", lambda self: self.fleet.stop())
    demo.fleet = _Fleet(gone)
    assert demo.run() == status and demo.fleet.stopped
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert ("keep_running" in summary["stages"]) == bool(gone)


def test_a_halted_rollout_says_why():
    from edgekit.demo.run import _why

    doc = {"state": "halted", "verdict": {"reasons": ["canary p95 3.1x control's"]},
           "devices": [{"device_id": "pi", "state": "failed", "result": {"error": "parity"}},
                       {"device_id": "x86", "state": "committed", "result": {"ok": True}}]}
    assert _why(doc) == ": canary p95 3.1x control's; pi: parity"
    assert _why({"state": "halted"}) == ""
