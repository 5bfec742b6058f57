"""``edgekit build --measure-on URL``: a real agent process (its HTTP API behind a token) times
every candidate in its own runtime; the search ranks by those figures, never by host timings,
and the report says where each figure came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import export.latency
import export.remote_latency
from edgekit.cli.main import app
from tests.edge_agent.agent_helpers import http_agent_process

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "build-measure-on-token-0123"
RECIPE = ("prune: {enabled: false}\nquantize: {precisions: [int8, fp32]}\n"
          "search: {formats: [onnx], latency_runs: 20, latency_warmup: 2, latency_rounds: 2}\n")


@pytest.fixture(scope="module")
def agent_url(tmp_path_factory, keypair, make_onnx_bundle):
    """A real `edgekit agent run` for an rpi4, serving a tiny model, HTTP API with a token."""
    state = tmp_path_factory.mktemp("agent-state")
    bundle = make_onnx_bundle("1", profile="rpi4")
    with http_agent_process(bundle, keypair[1], state, TOKEN, "dev-9") as base:
        yield base


def test_measure_on_ranks_by_the_agents_figures(agent_url, keypair, tmp_path, monkeypatch):
    returned: list[float] = []
    real = export.remote_latency.remote_benchmark

    def recording(*args, **kwargs):  # the agent's real figures, recorded on their way
        figures = real(*args, **kwargs)
        returned.extend(figures.values())
        return figures

    def no_host_timing(*args, **kwargs):
        raise AssertionError("host timings used although --measure-on was given")

    monkeypatch.setattr(export.remote_latency, "remote_benchmark", recording)
    monkeypatch.setattr(export.latency, "benchmark", no_host_timing)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    args = ["build", "--model", "tests/compress/tiny.py:tiny_model", "--data",
            "tests/compress/tiny.py:tiny_data", "--profile", "rpi4", "--key", str(keypair[0]),
            "-o", str(tmp_path / "out"), "--recipe", str(recipe), "--tolerance", "0.1",
            "--measure-on", agent_url, "--no-progress"]
    result = CliRunner().invoke(app, args, env={"EDGEKIT_AGENT_TOKEN": TOKEN},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    where = "agent dev-9 (rpi4, "
    assert doc["latency_source"]["name"] == "agent"
    assert doc["latency_source"]["description"].startswith(where)
    profile = doc["profiles"]["rpi4"]
    assert profile["selection"] == "fastest" and profile["latency_host"].startswith(where)
    assert "timed on the device itself (agent dev-9" in profile["latency_note"]
    assert "timed on the device itself" in result.output
    rows = profile["candidates"] + profile["references"]
    assert all(r["latency_source"].startswith(where) for r in rows)
    assert all(any(abs(r["latency_ms"] - v) < 1e-3 for v in returned) for r in rows)
    threads = {c["threads"] for c in profile["candidates"]}
    assert threads == {1, 2, 4}  # the device's own thread counts, not capped to this host
    chosen = next(c for c in profile["candidates"] if c["status"] == "chosen")
    assert chosen["latency_ms"] == min(c["latency_ms"] for c in profile["candidates"]
                                       if c["status"] in ("chosen", "passed"))


def test_an_agent_of_another_profile_is_refused_before_any_work(agent_url, keypair, tmp_path):
    from export.build import BuildRequest, run_build
    from export.errors import BuildError

    request = BuildRequest(model="tests/compress/tiny.py:broken_factory",
                           data="tests/compress/tiny.py:tiny_data", profiles=["x86-64"],
                           key_file=keypair[0], out_dir=tmp_path / "out", measure_on=agent_url,
                           measure_token=TOKEN)
    with pytest.raises(BuildError, match="runs profile 'rpi4', not 'x86-64'; build --profile"):
        run_build(request)
