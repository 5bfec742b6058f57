"""Detectors and generic models served by the agent: real bundles run in ONNX Runtime and
LiteRT (a yolov8 detector written with onnx; where torch is here, detectors in every layout
as other tools export them, and one converted to TFLite); answers, options, telemetry
blocks, samples and the golden verdict by the task's parity rule."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.agent import Agent
from edge_agent.bundle import open_bundle, trusted_keys
from edge_agent.contracts.build_info import Preprocessing
from edge_agent.errors import ModelLoadError
from edge_agent.golden import save_arrays
from edge_agent.inputs import InputError
from edge_agent.model import LoadedModel
from edge_agent.protocol import Sample, Telemetry
from edge_agent.tasks.detection import postprocess
from tests.edge_agent.agent_helpers import agent_config, messages
from tests.edge_agent.task_bundles import LABELS, golden_arrays, reference_images, rewrite


def agent_for(tmp_path, keypair, bundle, **over) -> Agent:
    return Agent(agent_config(tmp_path / "state", keypair[1], bundle, profile="x86-64", **over))


@pytest.mark.parametrize(("layout", "fmt"), [("yolov8", "onnx"), ("yolov5", "onnx"),
                                             ("boxes_scores", "onnx"), ("yolov8", "tflite")])
def test_a_detector_answers_boxes_scores_classes_and_labels(tmp_path, keypair, task_bundle,
                                                            layout, fmt):
    bundle = task_bundle(layout, fmt)
    x = reference_images(1, seed=7)
    with agent_for(tmp_path, keypair, bundle) as agent:
        spec = agent.active.model.manifest.task.detection
        answer = agent.predict(x)
        raw = agent.predict(x, raw=True)
        assert set(answer) == {"detections"} and 0 < len(answer["detections"]) \
            <= spec.max_detections
        expected = postprocess(raw, spec)[0]
        for row, box, score, cls in zip(answer["detections"], expected.boxes, expected.scores,
                                        expected.classes):
            assert row["class"] == int(cls) and row["label"] == LABELS[int(cls)]
            assert row["score"] == pytest.approx(float(score), abs=1e-5)
            assert row["box"] == pytest.approx(box.tolist(), abs=0.01)
        scores = [d["score"] for d in answer["detections"]]
        assert scores == sorted(scores, reverse=True) and min(scores) >= spec.score_threshold


def test_overrides_change_the_answer_not_the_telemetry(tmp_path, keypair, task_bundle):
    x = reference_images(1, seed=8)
    with agent_for(tmp_path, keypair, task_bundle("yolov8")) as agent:
        default = agent.predict(x)["detections"]
        strict = agent.predict(x, score_threshold=0.7)["detections"]
        apart = agent.predict(x, iou_threshold=0.0)["detections"]  # no overlap at all
        few = agent.predict(x, max_detections=2)["detections"]
        assert 0 < len(strict) < len(default) and min(d["score"] for d in strict) >= 0.7
        assert 0 < len(apart) < len(default) and few == default[:2]
        agent.telemetry_tick()
        window = Telemetry.from_dict(messages(agent, "telemetry")[-1]).detection
        assert window.frames == 4 and sum(window.count_hist) == 4
        assert sum(window.score_hist) == 4 * len(default)  # counted at the manifest's values


def test_boxes_come_back_in_the_callers_pixels_through_a_letterbox(tmp_path, keypair,
                                                                   task_bundle):
    steps = [{"op": "letterbox", "size": [64, 64], "value": 0.5}]
    bundle = rewrite(task_bundle("yolov8"), keypair, tmp_path / "boxed.ekb",
                     preprocessing=Preprocessing(steps=steps, layout="NCHW"))
    x = reference_images(1, seed=9)
    with agent_for(tmp_path, keypair, bundle) as agent:
        model = agent.predict(x)["detections"]
        caller = agent.predict(x, image_size=[120, 200])["detections"]
    ratio, top = 0.32, 13  # 200 x 120 scaled by 0.32 is 64 x 38, 13 rows of padding above
    for m, c in zip(model, caller):
        x1, y1, x2, y2 = m["box"]
        want = np.clip([x1 / ratio, (y1 - top) / ratio, x2 / ratio, (y2 - top) / ratio],
                       0, [200, 120, 200, 120])
        assert c["box"] == pytest.approx(want.tolist(), abs=0.05)


def test_detector_telemetry_and_samples(tmp_path, keypair, task_bundle):
    # the test detector's scores spread around 0.5: some below a 0.6 bar
    with agent_for(tmp_path, keypair, task_bundle("yolov8"), low_confidence=0.6,
                   sample_rate_per_min=600.0) as agent:
        for i in range(5):
            agent.predict(reference_images(1, seed=20 + i))
        agent.telemetry_tick()
        doc = messages(agent, "telemetry")[-1]
        sample = Sample.from_dict(messages(agent, "samples")[0])
    telemetry = Telemetry.from_dict(doc)
    window = telemetry.detection
    assert telemetry.confidence is None and telemetry.class_counts == {}
    assert window.frames == 5 and window.empty_frames == 0 and sum(window.count_hist) == 5
    assert sum(window.class_counts) == sum(window.score_hist) == sum(window.area_hist) > 0
    assert 0.25 <= window.mean_score <= 1 and telemetry.model.non_finite == 0
    assert sample.reason == "low_confidence" and sample.prediction is None
    assert sample.detections and min(d.score for d in sample.detections) < 0.6
    assert all(d.score >= 0.25 for d in sample.detections)
    assert sample.input.shape == [1, 3, 64, 64]


def test_a_generic_model_answers_its_named_outputs(tmp_path, keypair, task_bundle):
    x = reference_images(1, seed=3)
    with agent_for(tmp_path, keypair, task_bundle("generic")) as agent:
        answer = agent.predict(x)
        raw = agent.predict(x, raw=True)
        with pytest.raises(InputError, match="score_threshold is for detection bundles"):
            agent.predict(x, score_threshold=0.5)
        agent.telemetry_tick()
        telemetry = Telemetry.from_dict(messages(agent, "telemetry")[-1])
    assert list(answer["outputs"]) == ["boxes", "scores"]
    assert all(np.array_equal(a, b) for a, b in zip(answer["outputs"].values(), raw))
    assert [v.name for v in telemetry.values] == ["boxes", "scores"]  # the reference's names
    assert [sum(v.counts) for v in telemetry.values] == [2 * 7 * 64, 2 * 3 * 64]
    assert telemetry.detection is None and telemetry.confidence is None


def test_classifier_answers_stay_as_they_were(tmp_path, keypair, make_onnx_bundle, rng):
    x = rng.uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)
    with agent_for(tmp_path, keypair, make_onnx_bundle()) as agent:
        answer = agent.predict(x)
        assert isinstance(answer, list) and answer[0].shape == (1, 10)
        assert np.array_equal(agent.predict(x, raw=True)[0], answer[0])
        with pytest.raises(InputError, match="image_size is for detection bundles"):
            agent.predict(x, image_size=[10, 10])


def _shifted_golden(bundle, keypair, folder, pixels: float):
    """The bundle with its golden output's boxes moved by ``pixels`` (yolov8: rows 0-1)."""
    outputs = golden_arrays(bundle, keypair)
    outputs[0] = outputs[0].copy()
    outputs[0][:, :2] += pixels
    path = folder / f"golden-{pixels}.npz"
    path.write_bytes(save_arrays(outputs))
    return rewrite(bundle, keypair, folder / f"shifted-{pixels}.ekb",
                   payloads={"golden_output": path})


def test_the_golden_check_judges_detections_by_the_parity_rule(tmp_path, keypair, task_bundle):
    bundle = task_bundle("yolov8")
    keys = trusted_keys([keypair[1]])
    near = _shifted_golden(bundle, keypair, tmp_path, 0.1)  # elementwise: over atol
    with open_bundle(near, keys) as opened:
        loaded = LoadedModel.load(opened)  # IoU of the moved boxes stays over 0.9
        assert loaded.golden.ok and loaded.golden.max_abs_diff > loaded.golden.atol
    far = _shifted_golden(bundle, keypair, tmp_path, 6.0)
    with open_bundle(far, keys) as opened, pytest.raises(ModelLoadError) as info:
        LoadedModel.load(opened)
    assert "golden check failed: detections of 1 golden image(s) disagree by the parity rule" \
        in str(info.value)


def test_a_batch_answers_one_entry_per_image(tmp_path, keypair, task_bundle):
    from edge_agent.tasks.options import PredictOptions

    with agent_for(tmp_path, keypair, task_bundle("yolov8")) as agent:
        task = agent.active.model.task
        raw = [np.concatenate([agent.predict(reference_images(1, seed=s), raw=True)[0]
                               for s in (1, 2)])]  # the test model takes batch 1: run twice
        singles = [agent.predict(reference_images(1, seed=s)) for s in (1, 2)]
    answer = task.answer(raw, task.after_run(raw, None), PredictOptions())
    assert answer == {"images": singles}


@pytest.mark.parametrize("before", [0, 1 << 30])  # checked after the run / before it
def test_a_nan_frame_is_a_bad_input_not_a_bad_model(tmp_path, keypair, task_bundle, before):
    x = reference_images(1, seed=9)
    with agent_for(tmp_path, keypair, task_bundle("yolov8"),
                   finite_check_before_bytes=before) as agent:
        good = agent.predict(x)
        x[0, 0, 3, 3] = np.nan
        with pytest.raises(InputError, match="NaN or inf"):
            agent.predict(x)
        assert agent.total_inferences == 1
        agent.telemetry_tick()
        doc = Telemetry.from_dict(messages(agent, "telemetry")[-1])
        assert doc.model.non_finite == 0 and doc.detection.frames == 1
        x[0, 0, 3, 3] = 0.5
        assert len(agent.predict(x)["detections"]) == len(good["detections"])
