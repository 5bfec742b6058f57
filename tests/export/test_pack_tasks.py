"""``edgekit bundle pack`` of detectors and multi-output models exported by other tools."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_agent.bundle import open_bundle, trusted_keys
from edge_agent.model import LoadedModel
from edge_agent.tasks.detection import postprocess
from edgekit.cli.main import app
from tests.cli import run_main
from tests.export.foreign_detectors import CLASSES, SIZE, export_foreign

runner = CliRunner()
LABELS = ["person", "traffic light", "dog"]


def _pack(model, out, keypair, *extra):
    return runner.invoke(app, [str(a) for a in (
        "bundle", "pack", model, "--profile", "rpi4", "--name", "det", "--version", "1",
        "--key", keypair[0], "-o", out, *extra)], catch_exceptions=False)


@pytest.fixture
def labels_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("layout", ["yolov8", "yolov5", "boxes_scores"])
def test_a_foreign_detector_packs_with_its_task_and_reference(tmp_path, keypair, labels_file,
                                                              layout):
    model = export_foreign(layout, tmp_path / f"{layout}.onnx")
    reference = np.random.default_rng(0).uniform(0, 1, (24, 3, SIZE, SIZE)).astype(np.float32)
    np.save(tmp_path / "x.npy", reference)
    out = tmp_path / "det.ekb"
    result = _pack(model, out, keypair, "--task", "detection", "--layout", layout,
                   "--labels", labels_file, "--reference-data", tmp_path / "x.npy")
    assert result.exit_code == 0, result.output
    with open_bundle(out, trusted_keys([keypair[1]])) as opened:
        manifest = opened.manifest
        spec = manifest.task.detection
        assert manifest.task.kind == "detection" and spec.layout == layout
        assert spec.num_classes == CLASSES and spec.input_size == [SIZE, SIZE]
        assert spec.labels == LABELS and manifest.labels == LABELS
        ref = manifest.reference_stats.detection
        assert ref is not None and sum(ref.count_hist) == 24 and ref.mean_count > 0
        loaded = LoadedModel.load(opened)  # the golden pair re-checked in ONNX Runtime
        found = [d for i in range(2) for d in postprocess(loaded.predict(reference[i:i + 1]),
                                                          spec)]
        assert len(found) == 2 and all(len(d) <= spec.max_detections for d in found)
        assert all(((d.boxes >= -SIZE) & (d.boxes <= 2 * SIZE)).all() for d in found)
    shown = runner.invoke(app, ["bundle", "inspect", str(out)]).stdout
    assert f"task.detection.layout: {layout}" in shown and "traffic light" in shown


def test_a_two_output_model_packs_as_generic(tmp_path, keypair):
    model = export_foreign("boxes_scores", tmp_path / "two.onnx")
    np.save(tmp_path / "x.npy", np.random.default_rng(1).uniform(0, 1, (8, 3, SIZE, SIZE))
            .astype(np.float32))
    out = tmp_path / "two.ekb"
    result = _pack(model, out, keypair, "--task", "generic", "--reference-data",
                   tmp_path / "x.npy")
    assert result.exit_code == 0, result.output
    doc = json.loads(runner.invoke(app, ["bundle", "inspect", str(out), "--json"]).stdout)
    assert doc["task"]["kind"] == "generic" and len(doc["outputs"]) == 2
    assert [v["name"] for v in doc["reference_stats"]["values"]] == ["output_0", "output_1"]


@pytest.mark.parametrize(("args", "error"), [
    (["--layout", "yolov8"], "--layout is for --task detection, not --task classification"),
    (["--task", "detection"], "--task detection needs --layout"),
    (["--task", "detection", "--layout", "yolo"], "unknown detection layout 'yolo'"),
    (["--task", "detection", "--layout", "yolov5", "--num-classes", "3"],
     "layout 'yolov5' with 3 classes expects [batch, boxes, 8]"),
    (["--task", "detection", "--layout", "yolov8", "--num-classes", "5"],
     "layout 'yolov8' with 5 classes expects [batch, 9, boxes]"),
    (["--task", "detection", "--layout", "yolov8", "--input-size", "64"],
     "--input-size '64': give HEIGHTxWIDTH"),
    (["--task", "detect", "--layout", "yolov8"], "must be one of classification, detection"),
    (["--task", "detection", "--layout", "yolov8", "--labels", "TWO"],
     "--labels names 2 classes but the model's outputs hold 3"),
])
def test_bad_task_options_get_one_line_and_write_nothing(tmp_path, keypair, capsys, args, error):
    model = export_foreign("yolov8", tmp_path / "d.onnx")
    (tmp_path / "two.txt").write_text("a\nb\n", encoding="utf-8")
    args = [str(tmp_path / "two.txt") if a == "TWO" else a for a in args]
    out = tmp_path / "b.ekb"
    assert run_main("bundle", "pack", model, "--profile", "rpi4", "--name", "t", "--version", "1",
                    "--key", keypair[0], "-o", out, *args) == 1
    err = capsys.readouterr().err
    assert error in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_multi_output_model_packed_as_a_classifier_is_refused(tmp_path, keypair, capsys):
    model = export_foreign("boxes_scores", tmp_path / "two.onnx")
    assert run_main("bundle", "pack", model, "--profile", "rpi4", "--name", "t", "--version", "1",
                    "--key", keypair[0], "-o", tmp_path / "b.ekb") == 1
    assert "has 2 outputs; a classifier has one" in capsys.readouterr().err
