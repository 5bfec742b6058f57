"""Tokens on every /api/v1 route, open health and metrics, the URL-signing secret."""

from __future__ import annotations

import pytest

from tests.cloud_sync.api.conftest import AUTH, TOKEN

READS = ["/api/v1/devices", "/api/v1/devices/pi-1", "/api/v1/devices/pi-1/telemetry",
         "/api/v1/models", "/api/v1/models/tiny/versions", "/api/v1/ingest/stats"]


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("headers, message", [
    ({}, "missing API token"),
    ({"Authorization": "Bearer nope"}, "wrong API token"),
    ({"Authorization": f"Basic {TOKEN}"}, "missing API token"),
])
def test_reads_need_the_token(client, path, headers, message):
    got = client.get(path, headers=headers)
    assert got.status_code == 401 and got.json() == {"error": message + (
        "; send 'Authorization: Bearer <token>'" if message.startswith("missing") else "")}
    assert got.headers["www-authenticate"].startswith("Bearer")


def test_publishing_needs_the_token_before_reading_the_body(client, engine):
    got = client.post("/api/v1/models", content=b"x" * 100, headers={"Authorization": "Bearer n"})
    assert got.status_code == 401


def test_a_server_without_a_token_refuses_and_says_how_to_set_one(cloud_cfg, engine,
                                                                  monkeypatch):
    from fastapi.testclient import TestClient

    from cloud_sync.api import create_app

    monkeypatch.delenv("EDGEKIT_API_TOKEN", raising=False)
    with TestClient(create_app(cloud_cfg, engine)) as c:
        got = c.get("/api/v1/devices", headers=AUTH)
    assert got.status_code == 401 and "EDGEKIT_API_TOKEN" in got.json()["error"]


def test_the_token_comes_from_the_environment(cloud_cfg, engine, monkeypatch):
    from fastapi.testclient import TestClient

    from cloud_sync.api import create_app

    monkeypatch.setenv("EDGEKIT_API_TOKEN", TOKEN)
    with TestClient(create_app(cloud_cfg, engine)) as c:
        assert c.get("/api/v1/devices", headers=AUTH).status_code == 200


def test_health_metrics_and_docs_are_open(client):
    assert client.get("/healthz").json()["ok"] is True
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "edgekit cloud API"
    assert {"/api/v1/devices", "/api/v1/artifacts/{sha256}", "/api/v1/ingest/stats"} <= \
        set(spec["paths"])
    client.get("/api/v1/devices")
    text = client.get("/metrics").text
    assert ('edgekit_api_requests_total{method="GET",route="/api/v1/devices",status="401"} 1.0'
            in text)


def test_unknown_routes_and_methods_are_one_line(client):
    missing = client.get("/api/v1/nothing", headers=AUTH)
    assert missing.status_code == 404 and missing.json() == {
        "error": "no such endpoint GET /api/v1/nothing; see /docs"}
    wrong = client.delete("/api/v1/models", headers=AUTH)
    assert wrong.status_code == 405 and "DELETE is not allowed" in wrong.json()["error"]


def test_url_secret_is_made_once_with_mode_0600(tmp_path, monkeypatch):
    from cloud_sync.artifacts import SECRET_FILE, load_url_secret

    monkeypatch.delenv("EDGEKIT_ARTIFACT_URL_SECRET", raising=False)
    first = load_url_secret(tmp_path)
    assert load_url_secret(tmp_path) == first and len(first) == 64
    assert (tmp_path / SECRET_FILE).stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("EDGEKIT_ARTIFACT_URL_SECRET", "shared-secret-of-the-deployment-xyz")
    assert load_url_secret(tmp_path) == b"shared-secret-of-the-deployment-xyz"


@pytest.mark.parametrize("sha, ttl, message", [("abc", 60, "not a sha256"),
                                               ("ab" * 32, 0, "must be > 0")])
def test_signing_refuses_bad_arguments(sha, ttl, message):
    from cloud_sync.artifacts import ArtifactError, sign_artifact_url

    with pytest.raises(ArtifactError, match=message):
        sign_artifact_url("http://x", sha, ttl, b"s" * 32)
