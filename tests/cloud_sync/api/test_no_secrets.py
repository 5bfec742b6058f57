"""No secret in API output (issue 17, item 3): the triggers' action configs, policies,
errors and attempts (API and dashboard) hold no webhook secret, not the one in a
webhook URL's userinfo either, nor does the log of the failed actions; an answer for a
store failure holds no database password (nor does the log line beside it)."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from cloud_sync.actions.worker import run_due_actions
from cloud_sync.store import create_engine, transaction
from cloud_sync.triggers.controller import controller_step
from tests.cloud_sync.api.conftest import AUTH, TOKEN
from tests.cloud_sync.triggers.conftest import T0, WINDOW_S, make_trigger_cfg  # noqa: F401
from tests.cloud_sync.triggers.helpers import devices, publish_reference, store_windows

HOOK_SECRET = "hook-hmac-Secret-1f2e3d"
URL_PASSWORD = "url-Passw0rd-9a8b7c"
ENV_SECRET = "env-hook-Secret-4d5e6f"
DB_PASSWORD = "db-Passw0rd-0c1d2e"
SECRETS = (HOOK_SECRET, URL_PASSWORD, ENV_SECRET)


def _fired(engine, cfg) -> int:
    with transaction(engine) as conn:
        publish_reference(conn)
        store_windows(conn, devices(5, drifted=3), T0, 3, WINDOW_S, samples=1)
        fired = controller_step(conn, cfg, T0 + 3 * WINDOW_S).fired
    run_due_actions(engine, cfg)  # nothing listens on port 9: every webhook fails
    return fired[0]


def _assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows a secret"


def test_trigger_outputs_hold_no_webhook_secret(client, engine, make_trigger_cfg,  # noqa: F811
                                                monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("EDGEKIT_TEST_HOOK_SECRET", ENV_SECRET)
    cfg = make_trigger_cfg(actions=[
        {"kind": "webhook", "url": "http://127.0.0.1:9/plain", "secret": HOOK_SECRET,
         "timeout_s": 0.5},
        {"kind": "webhook", "url": f"http://hook:{URL_PASSWORD}@127.0.0.1:9/userinfo",
         "secret_env": "EDGEKIT_TEST_HOOK_SECRET", "timeout_s": 0.5},
        {"kind": "webhook", "url": f"http://127.0.0.1:9/q?password={URL_PASSWORD}",
         "timeout_s": 0.5},
    ], max_attempts=1)
    trigger_id = _fired(engine, cfg)

    listed = client.get("/api/v1/triggers", headers=AUTH)
    detail = client.get(f"/api/v1/triggers/{trigger_id}", headers=AUTH)
    page = client.get(f"/dashboard/triggers/{trigger_id}", headers=AUTH)
    for answer in (listed, detail, page):
        assert answer.status_code == 200, answer.text
    _assert_no_secret(listed.text, "GET /api/v1/triggers")
    _assert_no_secret(detail.text, "GET /api/v1/triggers/{id}")
    _assert_no_secret(page.text, "the dashboard's trigger page")
    _assert_no_secret(caplog.text, "the log of the failed actions")

    actions = detail.json()["actions"]
    assert [a["state"] for a in actions] == ["failed"] * 3
    assert actions[0]["config"]["secret"] == "***"
    assert actions[1]["config"]["url"] == "http://hook:***@127.0.0.1:9/userinfo"
    assert actions[1]["config"]["secret_env"] == "EDGEKIT_TEST_HOOK_SECRET"
    assert "127.0.0.1:9/userinfo" in actions[1]["last_error"]  # the error still says where
    assert all(a["history"][0]["error"] for a in actions)
    assert detail.json()["policy"]["actions"][0]["secret"] == "***"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_store_failure_answers_without_the_database_password(cloud_cfg, caplog):
    from cloud_sync.api import create_app

    url = f"postgresql://edgekit:{DB_PASSWORD}@127.0.0.1:1/edgekit"  # nothing listens there
    engine = create_engine(url)
    app = create_app(cloud_cfg, engine, api_token=TOKEN)
    caplog.set_level(logging.DEBUG)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            answers = [client.get("/healthz"), client.get("/api/v1/triggers", headers=AUTH),
                       client.get("/api/v1/devices", headers=AUTH)]
    finally:
        engine.dispose()
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert DB_PASSWORD not in answer.text and answer.json()["error"]
    assert DB_PASSWORD not in caplog.text
