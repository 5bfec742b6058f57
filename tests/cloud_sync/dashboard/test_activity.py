"""Triggers and rollouts pages over a filled store (SQLite and PostgreSQL): evidence as
tables (no raw documents, secrets redacted), a halted rollout shown as halted with canary
vs control figures, a promoted one with its whole timeline."""

from __future__ import annotations

import pytest

from tests.cloud_sync.dashboard.conftest import AUTH
from tests.cloud_sync.dashboard.html import raw_documents, text


def test_triggers_list_and_evidence_tables(client, filled):
    listed = text(client.get("/dashboard/triggers", headers=AUTH).text)
    assert "1 trigger fired" in listed and "sim-model 1" in listed
    page = client.get(f"/dashboard/triggers/{filled.trigger_id}", headers=AUTH).text
    shown = text(page)
    assert "devices affected dev-000, dev-001, dev-002" in shown
    for title in ("rule", "devices", "fleet scores", "top channels"):
        assert f"<h3>{title}</h3>" in page, title
    assert "input drift" in shown and " UTC" in shown
    assert "s3cret" not in page and "***" in page
    assert not raw_documents(page), raw_documents(page)[:3]
    assert client.get("/dashboard/triggers/999", headers=AUTH).status_code == 404


def test_halted_rollout_is_shown_as_halted_with_canary_and_control(client, filled):
    listed = client.get("/dashboard/rollouts", headers=AUTH).text
    assert f'<tr class="rollout-row" data-state="halted"><td><a href="/dashboard/rollouts/' \
           f'{filled.halted}">' in listed
    page = client.get(f"/dashboard/rollouts/{filled.halted}", headers=AUTH).text
    shown = text(page)
    assert "HALTED: mean confidence drop vs control" in shown
    assert "confidence mean 0.11 0.82" in shown and "devices 1 3" in shown
    assert "mean confidence drop vs control 0.71 0.15 over the limit" in shown
    assert "NaN/inf output rate 0 0.01 within" in shown
    assert "field-02 1 not sent" in shown and "field-02 1 pending" not in shown  # halted
    assert not raw_documents(page), raw_documents(page)[:3]


def test_promoted_rollout_shows_waves_and_timeline(client, filled):
    page = client.get(f"/dashboard/rollouts/{filled.promoted}", headers=AUTH).text
    shown = text(page)
    assert "Promoted to every wave" in shown and "HALTED" not in shown
    assert "canary committed 1" in shown and "wave 2 committed 2" in shown
    assert shown.count("baking 60 s") == 3 and "every step passed" in shown
    assert not raw_documents(page), raw_documents(page)[:3]
    missing = client.get("/dashboard/rollouts/999", headers=AUTH)
    assert missing.status_code == 404 and "no rollout 999" in text(missing.text)


@pytest.mark.parametrize("path", ["/dashboard/rollouts/latest", "/dashboard/triggers/x1"])
def test_a_malformed_id_is_the_error_page_not_json(client, path):
    page = client.get(path, headers=AUTH)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "pick one from the" in text(page.text) and "Overview" in text(page.text)
