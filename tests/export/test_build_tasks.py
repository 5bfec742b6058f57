"""``edgekit build`` beyond classifiers: a detector (yolov8 layout) and a two-output regressor,
through real exporters and runtimes, into bundles whose manifests carry the task."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress.errors import UserCodeError
from compress.recipe import Recipe
from edge_agent.bundle import open_bundle, trusted_keys
from edge_agent.model import LoadedModel
from export.build import BuildRequest, run_build
from tests.compress.tiny_tasks import detection_tensors, regression_tensors

TASKS = "tests/compress/tiny_tasks.py"
FAST = {"prune": {"ratios": [0.0, 0.4], "round_to": None}, "distill": {"epochs": 2},
        "search": {"latency_runs": 10, "latency_warmup": 2}}


def _request(tmp_path, keypair, model, data, profiles, formats=("onnx",), **kw):
    recipe = {**FAST, "search": {**FAST["search"], "formats": list(formats)}}
    return BuildRequest(model=f"{TASKS}:{model}", data=f"{TASKS}:{data}", profiles=profiles,
                        key_file=keypair[0], out_dir=tmp_path / "out",
                        recipe=Recipe.from_dict(recipe), **kw)


def test_a_detector_builds_for_a_pi_and_a_jetson(tmp_path, keypair):
    result = run_build(_request(tmp_path, keypair, "tiny_detector", "detection_data",
                                ["rpi4", "jetson-orin-nano"], formats=("onnx", "tflite"),
                                tolerance="0.05"))
    doc = json.loads(result.report_json.read_text())
    assert doc["metric"] == "map_50_95" and doc["task"]["kind"] == "detection"
    for name in ("rpi4", "jetson-orin-nano"):
        profile = doc["profiles"][name]
        assert profile["status"] == "ok", profile.get("reason")
        assert profile["metric"] >= profile["baseline_metric"] - 0.05
        assert {"detection_agreement", "max_count_diff", "min_iou"} <= set(profile["parity"])
        assert profile["task_figures"]["shipped"]["map_50"] > 0.8
        assert profile["task_picture"]
        with open_bundle(result.bundles[name], trusted_keys([keypair[1]])) as opened:
            manifest = opened.manifest
            assert manifest.task.kind == "detection"
            assert manifest.task.detection.layout == "yolov8"
            assert manifest.labels == ["bright", "dark"]
            ref = manifest.reference_stats.detection
            assert ref is not None and ref.mean_count > 0.5
            assert manifest.reference_stats.output is None
            loaded = LoadedModel.load(opened)
            x, _ = detection_tensors(4, 9)
            out = loaded.predict(x[:1].numpy())
            assert out[0].shape == (1, 6, 16)


def test_a_two_output_regressor_builds(tmp_path, keypair):
    result = run_build(_request(tmp_path, keypair, "tiny_regressor", "regression_data",
                                ["x86-64"], tolerance="0.01"))
    doc = json.loads(result.report_json.read_text())
    profile = doc["profiles"]["x86-64"]
    assert doc["metric"] == "negative_mse" and profile["status"] == "ok", profile.get("reason")
    assert len(profile["parity"]["per_output_max_abs_diff"]) == 2
    with open_bundle(result.bundles["x86-64"], trusted_keys([keypair[1]])) as opened:
        manifest = opened.manifest
        assert manifest.task.kind == "generic" and len(manifest.outputs) == 2
        assert [v.name for v in manifest.reference_stats.values] == ["quadrant_means", "spread"]
        x, y = regression_tensors(64, 7)
        means, _spread = LoadedModel.load(opened).predict(x.numpy())
        assert np.abs(means - y[:, :4].numpy()).mean() < 0.1


def test_a_detector_without_its_task_gets_one_line(tmp_path, keypair):
    with pytest.raises(UserCodeError, match=r"returns \[128, 6, 16\]; a classifier .* \"task\""):
        run_build(_request(tmp_path, keypair, "tiny_detector", "detection_data_without_task",
                           ["x86-64"]))


@pytest.mark.parametrize(("task", "message"), [
    ({"kind": "segmentation"}, "task.kind' must be one of classification, detection, generic"),
    ({"kind": "detection"}, "'task.detection' is required"),
    ({"kind": "detection", "detection": {"layout": "yolov8", "num_classes": 3,
                                         "input_size": [32, 32]}},
     r"expects \[batch, 7, boxes\], the model gives \[128, 6, 16\]"),
])
def test_a_bad_task_gets_one_line(tmp_path, keypair, task, message):
    from compress.tasks import build_task, parse_task
    from tests.compress.tiny_tasks import tiny_detector

    with pytest.raises(UserCodeError, match=message):
        spec = parse_task(task, "data function x: 'task'")
        build_task(spec).check_outputs(tiny_detector()(detection_tensors(128, 1)[0]), "m")
