"""The device and rollout pages of a detector fleet (issue 19), over SQLite and PostgreSQL:
the task's figures and charts, no raw documents in cells."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.cloud_sync.dashboard.conftest import AUTH, TOKEN
from tests.cloud_sync.dashboard.fill_detector import detector_cfg, fill_detector_fleet
from tests.cloud_sync.dashboard.html import text


@pytest.fixture()
def detector_site(tmp_path, db_url, engine):
    from cloud_sync.api import create_app

    cfg = detector_cfg(tmp_path / "cloud", db_url)
    filled = fill_detector_fleet(engine, cfg, time.time())
    with TestClient(create_app(cfg, engine, api_token=TOKEN),
                    raise_server_exceptions=False) as client:
        yield client, filled


def test_a_camera_page_shows_detection_charts_and_drift(detector_site):
    client, filled = detector_site
    page = client.get(f"/dashboard/devices/{filled.drifting[0]}", headers=AUTH)
    assert page.status_code == 200
    shown = text(page.text)
    for caption in ("Detections per frame", "Empty-frame rate", "Mean detection score",
                    "Detected class mix (JS distance, n = effective frames)",
                    "Detections per frame (PSI, n = frames)"):
        assert caption in shown, caption
    assert "Mean top-1 confidence" not in shown and 'data-kind="input"' not in page.text
    assert '"per_frame": [' in page.text and '"empty_rate": [' in page.text


def test_a_blind_detector_rollout_page(detector_site):
    client, filled = detector_site
    page = client.get(f"/dashboard/rollouts/{filled.halted}", headers=AUTH)
    shown = text(page.text)
    assert "HALTED: detections per frame, ratio to control 0 < 0.333" in shown
    assert "detections per frame 0 " in shown and "empty-frame rate 1 " in shown
    assert "empty-frame rate increase vs control" in shown and "under the limit" in shown
    assert "p-value" in shown and 'data-testid="class-mix"' in page.text
    assert "{" not in shown.split("Timeline")[0]  # no raw documents above the timeline
