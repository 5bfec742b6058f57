"""``POST /v1/predict`` of a detector and a generic model, from a real ``edgekit agent run``
process: JSON answers, options in the query string, raw tensors as .npz, one-line 400s."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.edge_agent.agent_helpers import http_agent_process
from tests.edge_agent.task_bundles import reference_images

TOKEN = "t0ken-for-task-tests-0123456789"


def post(base: str, path: str, x: np.ndarray, accept: str = "application/json"):
    buf = io.BytesIO()
    np.save(buf, x)
    request = urllib.request.Request(base + path, data=buf.getvalue(), method="POST", headers={
        "Content-Type": "application/x-npy", "Accept": accept,
        "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


@pytest.fixture(scope="module")
def detector_api(task_bundle, keypair, tmp_path_factory):
    state = tmp_path_factory.mktemp("http-detector") / "state"
    with http_agent_process(task_bundle("yolov8"), keypair[1], state, TOKEN, "det-1",
                            profile="x86-64") as base:
        yield base


def test_a_detector_answers_detections_over_http(detector_api):
    x = reference_images(1, seed=11)
    status, ctype, body = post(detector_api, "/v1/predict", x)
    doc = json.loads(body)
    assert status == 200 and ctype == "application/json"
    assert doc["model"] == {"name": "yolov8-onnx", "version": "1"}
    first = doc["detections"][0]
    assert set(first) == {"box", "score", "class", "label"} and len(first["box"]) == 4
    _, _, body = post(detector_api, "/v1/predict?max_detections=3&image_size=128,256", x)
    scaled = json.loads(body)["detections"]
    assert len(scaled) == 3 and scaled[0]["box"] == pytest.approx(
        [v * s for v, s in zip(first["box"], (4, 2, 4, 2))], abs=0.05)


def test_raw_outputs_come_as_json_or_npz(detector_api):
    x = reference_images(1, seed=12)
    _, _, body = post(detector_api, "/v1/predict?raw=1", x)
    raw = np.asarray(json.loads(body)["outputs"][0], dtype=np.float32)
    status, ctype, body = post(detector_api, "/v1/predict", x, accept="application/x-npz")
    assert status == 200 and ctype == "application/x-npz"
    with np.load(io.BytesIO(body), allow_pickle=False) as npz:
        assert npz.files == ["output0"] and np.allclose(npz["output0"], raw, atol=1e-5)


@pytest.mark.parametrize(("query", "error"), [
    ("score_threshold=1.5", "score_threshold must be a number between 0 and 1, got '1.5'"),
    ("iou_threshold=x", "iou_threshold must be a number between 0 and 1, got 'x'"),
    ("max_detections=-2", "max_detections must be a whole number from 1 to 10000, got '-2'"),
    ("image_size=480", "image_size must be [height, width] in pixels"),
    ("image_size=0,640", "image_size must be [height, width] in pixels"),
    ("raw=yes-please", "raw must be true or false (1 or 0)"),
    ("score=0.5", "unknown option 'score'; known: score_threshold"),
    ("raw=1&raw=0", "option 'raw' is given more than once; give it once"),
])
def test_bad_options_are_one_line_400s(detector_api, query, error):
    status, _, body = post(detector_api, f"/v1/predict?{query}", reference_images(1))
    message = json.loads(body)["error"]
    assert status == 400 and error in message and "\n" not in message


def test_a_generic_model_answers_named_outputs_over_http(task_bundle, keypair, tmp_path):
    x = reference_images(1, seed=13)
    with http_agent_process(task_bundle("generic"), keypair[1], tmp_path / "state", TOKEN,
                            "gen-1", profile="x86-64") as base:
        status, _, body = post(base, "/v1/predict", x)
        refused, _, why = post(base, "/v1/predict?score_threshold=0.5", x)
    outputs = json.loads(body)["outputs"]
    assert status == 200 and list(outputs) == ["boxes", "scores"]
    assert np.asarray(outputs["boxes"]).shape == (1, 7, 64)
    assert refused == 400 and "score_threshold is for detection bundles; this bundle's task " \
        "is 'generic'" in json.loads(why)["error"]
