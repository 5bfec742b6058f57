"""The real agent fetches a published bundle from a real uvicorn: signed URL, Range resume."""

from __future__ import annotations

import time

import pytest

from cloud_sync.api import sign_artifact_url
from edge_agent.agent import Agent
from edge_agent.download import DownloadError, download
from tests.cloud_sync.api.conftest import upload
from tests.cloud_sync.api.live import LiveServer
from tests.edge_agent.agent_helpers import agent_config, results, update_cmd


@pytest.fixture()
def served(app, client, make_onnx_bundle):
    """(server, published v2 answer, v2 file): v2 published, the app on a real port."""
    v2 = make_onnx_bundle("2", seed=1)
    answer = upload(client, v2)
    assert answer.status_code == 201, answer.text
    with LiveServer(app) as server:
        yield server, answer.json(), v2


def _signed(app, server, sha: str, ttl: float = 300.0, **kw) -> str:
    return sign_artifact_url(server.url, sha, ttl, app.state.settings.url_secret, **kw)


def test_agent_updates_from_a_signed_url(app, served, tmp_path, keypair, make_onnx_bundle):
    server, doc, v2 = served
    url = _signed(app, server, doc["sha256"])
    with Agent(agent_config(tmp_path / "state", keypair[1], make_onnx_bundle("1"))) as agent:
        agent.commands.handle(update_cmd(url, v2, "2", size=doc["size"]))
        result = results(agent)[-1]
        assert result["ok"] and result["detail"]["phase"] == "probation", result
        assert agent.model_info()["version"] == "2"


def test_agent_refuses_an_expired_url_and_keeps_its_model(app, served, tmp_path, keypair,
                                                          make_onnx_bundle):
    server, doc, v2 = served
    url = _signed(app, server, doc["sha256"], ttl=1.0, now=0.0)
    with Agent(agent_config(tmp_path / "state", keypair[1], make_onnx_bundle("1"))) as agent:
        agent.commands.handle(update_cmd(url, v2, "2"))
        result = results(agent)[-1]
        assert not result["ok"] and "403" in result["error"], result
        assert agent.model_info()["version"] == "1"


def test_download_resumes_a_partial_file_with_range(app, served, tmp_path):
    server, doc, v2 = served
    data = v2.read_bytes()
    dest = tmp_path / "b.ekb"
    dest.with_name("b.ekb.part").write_bytes(data[: len(data) // 3])
    download(_signed(app, server, doc["sha256"]), dest, max_bytes=1 << 24, timeout_s=5,
             retries=1, expected_size=doc["size"])
    assert dest.read_bytes() == data
    assert _eventually_counted(app, 'route="/api/v1/artifacts/{sha256}",status="206"')


def _eventually_counted(app, label: str, within_s: float = 5.0) -> bool:
    """The server counts a request after its last byte left, so the client may be faster."""
    deadline = time.monotonic() + within_s
    while label not in app.state.metrics.render().decode():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_download_is_refused_without_a_valid_signature(app, served, tmp_path):
    server, doc, _v2 = served
    forged = _signed(app, server, doc["sha256"]).replace("sig=", "sig=0")
    with pytest.raises(DownloadError, match="403"):
        download(forged, tmp_path / "x.ekb", max_bytes=1 << 24, timeout_s=5, retries=1)
