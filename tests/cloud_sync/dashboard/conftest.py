"""Dashboard fixtures: an app over the parametrised store (SQLite and PostgreSQL), filled
with realistic data (see ``fill``), and a client logged in with the API token."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.cloud_sync.dashboard.fill import fill_store, trigger_cfg

TOKEN = "dashboard-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def cloud_cfg(tmp_path, db_url):
    """A cloud config on the parametrised store with the fill's trigger policy."""
    return trigger_cfg(tmp_path / "cloud", db_url)


@pytest.fixture()
def app(cloud_cfg, engine):
    from cloud_sync.api import create_app

    return create_app(cloud_cfg, engine, api_token=TOKEN)


@pytest.fixture()
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture()
def filled(engine, cloud_cfg):
    """The store filled with devices, telemetry, drift, a trigger and two rollouts."""
    return fill_store(engine, cloud_cfg, time.time())
