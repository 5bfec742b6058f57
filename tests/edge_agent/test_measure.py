"""Timing candidate models on the agent: the request format, the timing, POST /v1/measure
beside a served model (which must not notice), one measurement at a time, bad files."""

from __future__ import annotations

import io
import json
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from edge_agent.agent import Agent
from edge_agent.measure import (
    CONTENT_TYPE,
    MeasureError,
    MeasureLimits,
    MeasureRequest,
    encode_request,
    measure,
    parse_request,
)
from tests.edge_agent.agent_helpers import agent_config, update_cmd
from tests.models import make_tiny_onnx

SAMPLE = np.full((1, 1, 8, 8), 0.25, np.float32)
DEVICE = {"id": "dev-1", "profile": "x86-64", "arch": "x86_64", "cpus": 2}


@pytest.fixture()
def private_tmp(tmp_path, monkeypatch):
    """Temp folders of this test (the agent runs in-process) land in one folder we can watch."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _request(path, fmt="onnx", **over) -> MeasureRequest:
    args = dict(format=fmt, options={"threads": 1}, model=path.read_bytes(), sample=SAMPLE,
                runs=30, warmup=3, rounds=3)
    args.update(over)
    return MeasureRequest(**args)


@pytest.mark.parametrize("fmt, runtime, providers", [
    ("onnx", "onnxruntime", ["CPUExecutionProvider"]),
    ("tflite", "litert", ["xnnpack"]),
])
def test_measure_times_a_file_in_its_runtime_and_removes_its_folder(
        fmt, runtime, providers, tiny_onnx, tiny_tflite, private_tmp):
    path = tiny_onnx if fmt == "onnx" else tiny_tflite
    req = parse_request(encode_request(_request(path, fmt)), MeasureLimits())
    result = measure(req, DEVICE)
    assert result.runtime == runtime and result.providers == providers
    assert len(result.round_medians_ms) == 3 and result.runs == 30 and result.threads == 1
    assert result.median_ms == min(result.round_medians_ms) > 0
    assert result.min_ms <= result.median_ms <= result.p95_ms
    assert result.device == DEVICE and result.load_ms > 0
    assert result.runtime_version[0].isdigit()
    assert list(private_tmp.iterdir()) == []


def test_slower_model_measures_slower(tiny_onnx, tmp_path, private_tmp):
    slow = make_tiny_onnx(tmp_path / "slow.onnx", slow=8)
    fast_ms = measure(_request(tiny_onnx), DEVICE).median_ms
    slow_ms = measure(_request(slow), DEVICE).median_ms
    assert slow_ms > 2 * fast_ms


def _npz(**members) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def _doc(**over) -> np.ndarray:
    doc = {"v": 1, "format": "onnx", "options": {"threads": 1}, "runs": 10, "rounds": 2}
    doc.update(over)
    return np.array(json.dumps(doc))


MODEL = np.frombuffer(b"not really a model", np.uint8)


@pytest.mark.parametrize("body, match", [
    (b"garbage", "not a valid .npz"),
    (_npz(model=MODEL, sample=SAMPLE), "model, sample and request"),
    (_npz(model=MODEL, sample=SAMPLE, request=_doc(format="caffe")), "'format' must be one of"),
    (_npz(model=MODEL, sample=SAMPLE, request=_doc(options={"thread": 2})),
     "unknown runtime option 'thread'"),
    (_npz(model=MODEL, sample=SAMPLE, request=_doc(options={"threads": -1})), "0..256"),
    (_npz(model=MODEL, sample=SAMPLE, request=_doc(options={"delegate": "tpu"})),
     "xnnpack, gpu or none"),
    (_npz(model=MODEL, sample=SAMPLE, request=_doc(runs=10**9)), "'runs' must be"),
    (_npz(model=MODEL, sample=SAMPLE, request=_doc(runs=2, rounds=5)), "must not exceed"),
    (_npz(model=MODEL, sample=SAMPLE, request=_doc(v=7)), '"v": 1'),
    (_npz(model=MODEL, sample=np.full((1, 4), np.nan, np.float32), request=_doc()), "NaN"),
    (_npz(model=np.zeros(3, np.float32), sample=SAMPLE, request=_doc()), "uint8"),
    (_npz(model=np.zeros(5000, np.uint8), sample=SAMPLE, request=_doc()), "unpacks to"),
])
def test_bad_requests_are_one_line_errors(body, match):
    with pytest.raises(MeasureError, match=match) as info:
        parse_request(body, MeasureLimits(max_bytes=4000))
    assert "\n" not in str(info.value)


def test_compressed_archive_cannot_unpack_past_the_limit():
    buf = io.BytesIO()
    np.savez_compressed(buf, model=np.zeros(1 << 20, np.uint8), sample=SAMPLE, request=_doc())
    assert len(buf.getvalue()) < 4000  # a small body that would unpack to a megabyte
    with pytest.raises(MeasureError, match="unpacks to"):
        parse_request(buf.getvalue(), MeasureLimits(max_bytes=4000))


def test_a_model_that_does_not_take_the_sample_is_a_clear_error(tiny_onnx, private_tmp):
    req = _request(tiny_onnx, sample=np.zeros((1, 3), np.float32))
    with pytest.raises(MeasureError, match="cannot run the sample"):
        measure(req, DEVICE)
    assert list(private_tmp.iterdir()) == []


# Over HTTP, beside a served model --------------------------------------------------------
@pytest.fixture()
def served(tmp_path, keypair, make_onnx_bundle, private_tmp):
    agent = Agent(agent_config(tmp_path / "state", keypair[1], make_onnx_bundle("1"),
                               http="127.0.0.1:0"))
    agent.start()
    yield agent, f"http://127.0.0.1:{agent.http.server_address[1]}"
    agent.stop()


def _post(url: str, body: bytes, ctype: str = CONTENT_TYPE) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _predict(base: str, x: np.ndarray) -> dict:
    status, doc = _post(base + "/v1/predict", json.dumps({"input": x.tolist()}).encode(),
                        "application/json")
    assert status == 200, doc
    return doc


def test_served_model_answers_the_same_during_and_after_a_measurement(served, tmp_path, rng):
    _agent, base = served
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    before = _predict(base, x)
    candidate = make_tiny_onnx(tmp_path / "other.onnx", seed=7, slow=4)
    answers: list[tuple[int, dict]] = []
    thread = threading.Thread(target=lambda: answers.append(_post(
        base + "/v1/measure", encode_request(_request(candidate, runs=300)))))
    thread.start()
    during = []
    while thread.is_alive():
        during.append(_predict(base, x))
    thread.join()
    (status, figures), = answers
    assert status == 200 and figures["median_ms"] > 0 and figures["device"]["id"] == "dev-1"
    assert during, "the measurement finished before a prediction could overlap it"
    for doc in [*during, _predict(base, x)]:
        assert doc == before  # same outputs, same model name and version


def test_a_second_measurement_while_one_runs_gets_429(served, tmp_path, private_tmp):
    _agent, base = served
    slow = make_tiny_onnx(tmp_path / "slow.onnx", slow=8)
    answers: list[tuple[int, dict]] = []
    first = threading.Thread(target=lambda: answers.append(_post(
        base + "/v1/measure", encode_request(_request(slow, runs=2000)))))
    first.start()
    deadline = time.monotonic() + 60
    while not list(private_tmp.iterdir()):  # the first holds the lock once its folder exists
        assert time.monotonic() < deadline and first.is_alive(), answers
        time.sleep(0.005)
    status, doc = _post(base + "/v1/measure", encode_request(_request(slow, runs=1, rounds=1)))
    assert first.is_alive(), "the first measurement ended too soon to overlap"
    assert status == 429 and "another measurement is running" in doc["error"]
    first.join()
    assert answers[0][0] == 200 and list(private_tmp.iterdir()) == []


def test_an_invalid_model_file_is_400_and_the_agent_keeps_serving(served, tmp_path, rng):
    _agent, base = served
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an onnx file" * 10)
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    before = _predict(base, x)
    status, doc = _post(base + "/v1/measure", encode_request(_request(junk)))
    assert status == 400 and "cannot load" in doc["error"] and "\n" not in doc["error"]
    assert _predict(base, x) == before


@pytest.mark.parametrize("body, ctype, code, match", [
    (b"x", "application/json", 415, CONTENT_TYPE),
    (b"PK\x03\x04 a broken archive", CONTENT_TYPE, 400, "not a valid .npz"),
])
def test_bad_measure_bodies_get_4xx(served, body, ctype, code, match):
    _agent, base = served
    status, doc = _post(base + "/v1/measure", body, ctype)
    assert status == code and match in doc["error"]


def test_measure_can_be_disabled_and_bodies_are_bounded(tmp_path, keypair, make_onnx_bundle,
                                                        tiny_onnx):
    off = agent_config(tmp_path / "a", keypair[1], make_onnx_bundle("1"), http="127.0.0.1:0",
                       measure=False)
    small = agent_config(tmp_path / "b", keypair[1], make_onnx_bundle("1"), http="127.0.0.1:0",
                         measure_max_bytes=1000)
    body = encode_request(_request(tiny_onnx))
    with Agent(off) as a, Agent(small) as b:
        a.start()
        b.start()
        status, doc = _post(f"http://127.0.0.1:{a.http.server_address[1]}/v1/measure", body)
        assert status == 403 and "measure: true" in doc["error"]
        with urllib.request.urlopen(f"http://127.0.0.1:{a.http.server_address[1]}/v1/measure",
                                    timeout=10) as resp:
            assert json.loads(resp.read())["enabled"] is False
        status, doc = _post(f"http://127.0.0.1:{b.http.server_address[1]}/v1/measure", body)
        assert status == 413 and "over the 1000 limit" in doc["error"]


def test_no_measuring_while_a_new_model_is_on_probation(tmp_path, keypair, make_onnx_bundle,
                                                       served_dir, tiny_onnx):
    cfg = agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"), http="127.0.0.1:0")
    folder, files = served_dir
    v2 = make_onnx_bundle("2", seed=1)
    (folder / "v2.ekb").write_bytes(v2.read_bytes())
    with Agent(cfg) as agent:
        agent.start()
        agent.commands.handle(update_cmd(files.url("v2.ekb"), v2, "2"))
        assert agent.probation is not None
        base = f"http://127.0.0.1:{agent.http.server_address[1]}"
        status, doc = _post(base + "/v1/measure", encode_request(_request(tiny_onnx)))
        assert status == 409 and "probation" in doc["error"]
