"""Timing exported files on a real agent process (`edgekit agent run --http`) through
export.remote_latency, while the agent keeps serving its own model unchanged."""

from __future__ import annotations

import io
import json
import math
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agent import Agent
from edgekit.local_broker import free_port
from export.latency import Timing
from export.remote_latency import RemoteLatencyError, describe_remote, remote_benchmark
from tests.edge_agent.agent_helpers import agent_config, http_agent_process
from tests.models import make_tiny_onnx

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "remote-latency-test-token-0123"
SAMPLE = np.full((1, 1, 8, 8), 0.5, np.float32)


@pytest.fixture(scope="module")
def agent_process(tmp_path_factory, keypair, make_onnx_bundle):
    """A real `edgekit agent run` serving a tiny model, its HTTP API guarded by a token."""
    state = tmp_path_factory.mktemp("agent-state")
    with http_agent_process(make_onnx_bundle("1"), keypair[1], state, TOKEN, "dev-7") as base:
        yield base


def _predict(base: str, x: np.ndarray) -> tuple[bytes, str]:
    """The served model's raw .npy answer and its model info."""
    buf = io.BytesIO()
    np.save(buf, x)
    req = urllib.request.Request(base + "/v1/predict", data=buf.getvalue(), headers={
        "Content-Type": "application/x-npy", "Accept": "application/x-npy",
        "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        npy = resp.read()
    with urllib.request.urlopen(base + "/healthz", timeout=10) as resp:
        return npy, json.dumps(json.loads(resp.read())["model"], sort_keys=True)


def _timings(tmp_path: Path, tiny_tflite: Path) -> list[Timing]:
    other = make_tiny_onnx(tmp_path / "candidate.onnx", seed=5, slow=3)
    return [Timing.of(("onnx", "fp32"), "onnx", other,
                      {"providers": ["CPUExecutionProvider"], "threads": 1, "opset": 17}),
            Timing.of(("tflite", "fp32"), "tflite", tiny_tflite,
                      {"delegate": "xnnpack", "threads": 1})]


def test_remote_benchmark_times_onnx_and_tflite_on_the_agent(agent_process, tmp_path,
                                                             tiny_tflite, rng):
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    before = _predict(agent_process, x)
    timings = _timings(tmp_path, tiny_tflite)
    figures: list[dict] = []
    thread = threading.Thread(target=lambda: figures.append(remote_benchmark(
        timings, SAMPLE, url=agent_process, token=TOKEN, runs=300, warmup=5, rounds=3)))
    thread.start()
    during = []
    while thread.is_alive():
        during.append(_predict(agent_process, x))
    thread.join()
    (ms,) = figures
    assert set(ms) == {t.key for t in timings}
    assert all(math.isfinite(v) and v > 0 for v in ms.values())
    assert ms[("onnx", "fp32")] > ms[("tflite", "fp32")]  # three 512x512 matmuls vs none
    assert during and all(d == before for d in during) and _predict(agent_process, x) == before


def test_describe_remote_names_the_device(agent_process):
    text = describe_remote(agent_process + "/", TOKEN)
    assert text.startswith("agent dev-7 (rpi4, ") and text.endswith(f"at {agent_process}")


@pytest.mark.parametrize("token", [None, "a-wrong-token-of-some-length"])
def test_a_wrong_token_is_a_one_line_error(agent_process, tmp_path, tiny_tflite, token):
    with pytest.raises(RemoteLatencyError, match=r"refused the token \(401\)") as info:
        remote_benchmark(_timings(tmp_path, tiny_tflite), SAMPLE, url=agent_process,
                         token=token)
    assert "\n" not in str(info.value)


def test_an_invalid_file_is_named_and_the_agent_keeps_serving(agent_process, tmp_path, rng):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"definitely not a flatbuffer" * 4)
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    before = _predict(agent_process, x)
    with pytest.raises(RemoteLatencyError, match=r"junk\.tflite \(HTTP 400\).*cannot load"):
        remote_benchmark([Timing.of("j", "tflite", junk, {"threads": 1})], SAMPLE,
                         url=agent_process, token=TOKEN)
    assert _predict(agent_process, x) == before


@pytest.mark.parametrize("url, match", [
    ("127.0.0.1:8080", "must look like http://HOST:PORT"),
    (f"http://127.0.0.1:{free_port()}", "cannot reach the agent"),
])
def test_bad_or_unreachable_agent_urls(url, match, tiny_onnx):
    with pytest.raises(RemoteLatencyError, match=match):
        remote_benchmark([Timing.of("a", "onnx", tiny_onnx, {})], SAMPLE, url=url, token=None)


@pytest.mark.parametrize("over, match", [
    ({"measure": False}, "measuring disabled: set 'measure: true'"),
    ({"measure_max_bytes": 2000}, "over the 2000-byte limit .* raise its 'measure_max_bytes'"),
    ({"measure_max_runs": 10}, "100 runs are over the 10 .* 'measure_max_runs'"),
])
def test_agent_limits_are_one_line_errors(tmp_path, keypair, make_onnx_bundle, tiny_onnx,
                                          over, match):
    cfg = agent_config(tmp_path / "s", keypair[1], make_onnx_bundle("1"), http="127.0.0.1:0",
                       **over)
    with Agent(cfg) as agent:
        agent.start()
        with pytest.raises(RemoteLatencyError, match=match):
            remote_benchmark([Timing.of("a", "onnx", tiny_onnx, {"threads": 1})], SAMPLE,
                             url=f"http://127.0.0.1:{agent.http.server_address[1]}",
                             token=None)
