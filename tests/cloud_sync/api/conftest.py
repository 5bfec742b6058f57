"""API fixtures: an app over the parametrised store (SQLite and PostgreSQL), its client,
the token, and bundles published through it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UPLOAD_CAP = 4 << 20


def upload(client: TestClient, bundle: Path, headers: dict | None = None):
    """POST a bundle file as the raw body."""
    return client.post("/api/v1/models", content=Path(bundle).read_bytes(),
                       headers={**AUTH, "Content-Type": "application/octet-stream",
                                **(headers or {})})


@pytest.fixture()
def cloud_cfg(tmp_path, db_url, keypair):
    """A cloud config: data folder in tmp, the parametrised store, the test key trusted."""
    from cloud_sync.config import CloudConfig

    return CloudConfig(data_dir=tmp_path / "cloud", db=db_url, pubkeys=(keypair[1],))


@pytest.fixture()
def app(cloud_cfg, engine, monkeypatch):
    from cloud_sync.api import create_app

    monkeypatch.delenv("EDGEKIT_ARTIFACT_URL_SECRET", raising=False)
    return create_app(cloud_cfg, engine, api_token=TOKEN, max_upload_bytes=UPLOAD_CAP)


@pytest.fixture()
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture()
def published(client, make_onnx_bundle) -> dict:
    """Version 1 of 'tiny' for x86-64, published; the server's answer plus the file."""
    bundle = make_onnx_bundle("1")
    answer = upload(client, bundle)
    assert answer.status_code == 201, answer.text
    return {**answer.json(), "file": bundle}
