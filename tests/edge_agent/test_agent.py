"""The agent offline: predicting, telemetry into the outbox, samples, commands, HTTP API."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.agent import Agent, InputError
from edge_agent.errors import ConfigError, EdgekitError
from tests.edge_agent.agent_helpers import agent_config, command, messages, results


@pytest.fixture()
def agent(tmp_path, keypair, make_onnx_bundle):
    a = Agent(agent_config(tmp_path / "state", keypair[1], make_onnx_bundle("1")))
    yield a
    a.stop()


def test_predict_returns_probabilities_and_counts(agent, rng):
    out = agent.predict(rng.standard_normal((4, 1, 8, 8)))
    assert out[0].shape == (4, 10) and np.allclose(out[0].sum(axis=1), 1, atol=1e-5)
    single = agent.predict(rng.standard_normal((1, 8, 8)))  # batch dimension added
    assert single[0].shape == (1, 10)
    assert agent.total_inferences == 2


@pytest.mark.parametrize("bad, match", [
    (np.zeros((1, 1, 9, 8)), "does not fit"),
    (np.zeros((2, 64)), "does not fit"),
    ("hello", "not a numeric array"),
    (np.full((1, 1, 8, 8), np.nan), "NaN"),
])
def test_bad_input_is_refused_and_agent_keeps_serving(agent, bad, match, rng):
    with pytest.raises(InputError, match=match):
        agent.predict(bad)
    assert agent.predict(rng.standard_normal((1, 1, 8, 8)))[0].shape == (1, 10)


def test_large_inputs_are_checked_after_the_run_when_the_outputs_are_not_finite(
        tmp_path, keypair, make_onnx_bundle, rng):
    cfg = agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"),
                       finite_check_before_bytes=0)  # every input counts as large
    with Agent(cfg) as a:
        with pytest.raises(InputError, match="NaN or inf"):
            a.predict(np.full((1, 1, 8, 8), np.inf))
        assert a.predict(rng.standard_normal((1, 1, 8, 8)))[0].shape == (1, 10)
        a.telemetry_tick()
        (doc,) = messages(a, "telemetry")
        assert doc["inferences"] == 1 and doc["model"]["non_finite"] == 0


def test_a_negative_finite_check_size_is_a_config_error(tmp_path, keypair):
    with pytest.raises(ConfigError, match="finite_check_before_bytes"):
        agent_config(tmp_path / "s", keypair[1], finite_check_before_bytes=-1)


def test_telemetry_window_lands_in_outbox(agent, rng):
    for _ in range(5):
        agent.predict(rng.standard_normal((2, 1, 8, 8)))
    seq = agent.telemetry_tick()
    (doc,) = messages(agent, "telemetry")
    assert doc["seq"] == seq and doc["inferences"] == 10 and doc["errors"] == 0
    assert doc["latency_ms"]["p50"] > 0 and sum(doc["class_counts"].values()) == 10
    assert doc["model"] == {"name": "tiny", "version": "1", "non_finite": 0, "probation": False}
    assert doc["system"]["rss_mb"] > 0 and "outbox" in doc
    assert agent.telemetry_tick() == seq + 1  # seq is monotonic


def test_seq_survives_restart(tmp_path, keypair, make_onnx_bundle):
    cfg = agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"))
    with Agent(cfg) as a:
        first = a.telemetry_tick()
    with Agent(cfg) as b:
        assert b.telemetry_tick() == first + 1


def test_low_confidence_inputs_become_rate_limited_samples(tmp_path, keypair, make_onnx_bundle):
    cfg = agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"), low_confidence=1.0,
                       sample_rate_per_min=3)
    with Agent(cfg) as a:
        for _ in range(10):
            a.predict(np.zeros((1, 1, 8, 8), np.float32))
        samples = messages(a, "samples")
    assert len(samples) == 3  # the bucket allows three a minute
    assert samples[0]["reason"] == "low_confidence" and samples[0]["input"]["shape"] == [1, 1, 8, 8]


def test_ping_and_set_config_commands_are_answered(agent):
    agent.commands.handle(command("ping"))
    agent.commands.handle(command("set-config", telemetry_interval_s=2.5, sample_rate_per_min=0))
    ping, setc = results(agent)
    assert ping["ok"] and ping["detail"]["model"]["version"] == "1"
    assert setc["ok"] and agent.serving.settings.telemetry_interval_s == 2.5


@pytest.mark.parametrize("payload, error", [
    (b"garbage", "not UTF-8 JSON"),
    (b'{"v": 1, "cmd_id": "x", "type": "self-destruct", "ts": 1, "args": {}}', "must be one of"),
    (b'{"v": 9, "cmd_id": "x", "type": "ping", "ts": 1}', "protocol version 9"),
])
def test_malformed_commands_get_error_results(agent, payload, error):
    agent.commands.handle(payload)
    (res,) = results(agent)
    assert not res["ok"] and error in res["error"]


def test_rollback_without_previous_is_an_error_result(agent):
    agent.commands.handle(command("rollback"))
    (res,) = results(agent)
    assert not res["ok"] and "no previous model" in res["error"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(
    st.sampled_from(["v", "cmd_id", "type", "ts", "args"]),
    st.one_of(st.none(), st.integers(), st.text(max_size=10), st.floats(allow_nan=False),
              st.sampled_from(["update", "rollback", "ping", "set-config"]), st.just(1),
              st.dictionaries(st.sampled_from(["url", "sha256", "version", "telemetry_interval_s",
                                               "size"]),
                              st.one_of(st.integers(), st.text(max_size=70), st.floats()),
                              max_size=4)), max_size=5),
    raw=st.binary(max_size=40))
def test_fuzzed_commands_never_crash_and_always_answer(agent, doc, raw):
    before = len(results(agent))
    agent.commands.handle(json.dumps(doc).encode())
    agent.commands.handle(raw)
    assert len(results(agent)) == before + 2
    assert agent.model_info()["version"] == "1"


def test_config_errors_are_clear(tmp_path, keypair):
    with pytest.raises(ConfigError, match="unknown agent setting 'brokr'"):
        agent_config(tmp_path, keypair[1], brokr="x")
    with pytest.raises(ConfigError, match="device_id"):
        agent_config(tmp_path, keypair[1], device_id="a/b")
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1:8080"):
        agent_config(tmp_path, keypair[1], http="localhost")


def test_first_start_without_bundle_is_a_clear_error(tmp_path, keypair):
    with pytest.raises(EdgekitError, match="--bundle"):
        Agent(agent_config(tmp_path / "s", keypair[1]))


# HTTP API -----------------------------------------------------------------------------------
@pytest.fixture()
def served(tmp_path, keypair, make_onnx_bundle):
    a = Agent(agent_config(tmp_path / "state", keypair[1], make_onnx_bundle("1"),
                           http="127.0.0.1:0"))
    a.start()
    host, port = a.http.server_address[:2]
    yield a, f"http://{host}:{port}"
    a.stop()


def _post(url: str, body: bytes, ctype: str):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_predict_json_and_npy(served, rng):
    agent, base = served
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    status, doc = _post(base + "/v1/predict", json.dumps({"input": x.tolist()}).encode(),
                        "application/json")
    assert status == 200 and np.allclose(doc["outputs"][0], agent.predict(x)[0], atol=1e-6)
    buf = io.BytesIO()
    np.save(buf, x)
    status, doc = _post(base + "/v1/predict", buf.getvalue(), "application/x-npy")
    assert status == 200 and len(doc["outputs"][0][0]) == 10


@pytest.mark.parametrize("body, ctype, code, match", [
    (b'{"input": [[1, 2, 3]]}', "application/json", 400, "does not fit"),
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b'{"x": 1}', "application/json", 400, '"inputs"'),
    (b"\x93NUMPY garbage", "application/x-npy", 400, "not a valid .npy"),
    (b"a,b", "text/csv", 415, "not supported"),
])
def test_http_bad_requests_get_4xx_and_agent_keeps_running(served, body, ctype, code, match):
    _agent, base = served
    status, doc = _post(base + "/v1/predict", body, ctype)
    assert status == code and match in doc["error"]
    with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
        assert json.loads(resp.read())["status"] == "ok"


def test_http_metrics_are_prometheus_text(served, rng):
    agent, base = served
    agent.predict(rng.standard_normal((1, 1, 8, 8)))
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert "edgekit_inferences_total 1" in text and 'version="1"' in text


def test_http_npy_response_with_accept_header(served, rng):
    agent, base = served
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, x)
    req = urllib.request.Request(base + "/v1/predict", data=buf.getvalue(),
                                 headers={"Content-Type": "application/x-npy",
                                          "Accept": "application/x-npy"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "application/x-npy"
        out = np.load(io.BytesIO(resp.read()), allow_pickle=False)
    assert np.allclose(out, agent.predict(x)[0], atol=1e-6)


def test_logits_and_probabilities_give_the_same_confidence():
    from edge_agent.metrics import looks_like_probabilities, top1

    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert looks_like_probabilities(probs) and not looks_like_probabilities(logits)
    c1, p1 = top1(logits, False)
    c2, p2 = top1(probs, True)
    assert (c1 == c2).all() and np.allclose(p1, p2, atol=1e-6)
