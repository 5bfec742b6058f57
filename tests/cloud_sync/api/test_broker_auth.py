"""HTTP authn/authz for EMQX and VerneMQ, with the bodies their documentation shows,
on SQLite and PostgreSQL: a device's own topics only, the service user's rules, unknown
users and wrong passwords denied, bad bodies a 400 with one line, the optional secret."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from cloud_sync.registry import add_device, ensure_service_account, remove_device
from cloud_sync.store import transaction

EMQX = "/broker-auth/emqx"
VERNE = "/broker-auth/vernemq"


@pytest.fixture()
def logins(engine, cloud_cfg) -> dict[str, str]:
    """pi-1 and pi-2 in fleet lab, and the service user: username -> password."""
    with transaction(engine) as conn:
        found = {c.username: c.password for c in (add_device(conn, "pi-1", "lab"),
                                                   add_device(conn, "pi-2", "lab"))}
        account = ensure_service_account(conn, "edgekit-cloud",
                                         cloud_cfg.service_password_file)
    found["edgekit-cloud"] = account.password_file.read_text().strip()
    return found


def emqx_authn(client, username, password, **extra):
    return client.post(f"{EMQX}/authn", json={"username": username, "password": password,
                                              "clientid": f"c-{username}", **extra})


def emqx_authz(client, username, topic, action):
    return client.post(f"{EMQX}/authz", json={"username": username, "clientid": "c-1",
                                              "topic": topic, "action": action})


def register(client, username, password, hook="auth_on_register"):
    return client.post(f"{VERNE}/{hook}", json={
        "peer_addr": "127.0.0.1", "peer_port": 8888, "username": username,
        "password": password, "mountpoint": "", "client_id": "clientid",
        "clean_session": False})


def publish(client, username, topic, hook="auth_on_publish"):
    return client.post(f"{VERNE}/{hook}", json={
        "username": username, "client_id": "clientid", "mountpoint": "", "qos": 1,
        "topic": topic, "payload": "aGVsbG8=", "retain": False})


def subscribe(client, username, topics, hook="auth_on_subscribe"):
    return client.post(f"{VERNE}/{hook}", json={
        "client_id": "clientid", "mountpoint": "", "username": username,
        "topics": [{"topic": t, "qos": 1} for t in topics]})


def test_emqx_authn_checks_the_password_against_the_registry(client, logins):
    got = emqx_authn(client, "pi-1", logins["pi-1"])
    assert got.status_code == 200 and got.json() == {"result": "allow", "is_superuser": False}
    assert got.headers["content-type"] == "application/json"
    assert emqx_authn(client, "pi-1", logins["pi-2"]).json()["result"] == "deny"
    assert emqx_authn(client, "pi-1", "").json()["result"] == "deny"
    assert emqx_authn(client, "pi-1", None).json()["result"] == "deny"
    assert emqx_authn(client, "ghost", "x").json()["result"] == "deny"
    assert emqx_authn(client, None, None).json()["result"] == "deny"
    assert emqx_authn(client, "edgekit-cloud", logins["edgekit-cloud"]).json()["result"] \
        == "allow"


def test_emqx_authz_grants_a_device_its_own_topics_only(client, logins):
    def result(user, topic, action):
        return emqx_authz(client, user, topic, action).json()["result"]

    assert result("pi-1", "edgekit/lab/pi-1/telemetry", "publish") == "allow"
    assert result("pi-1", "edgekit/lab/pi-1/cmd/result", "publish") == "allow"
    assert result("pi-1", "edgekit/lab/pi-2/telemetry", "publish") == "deny"
    assert result("pi-1", "edgekit/other/pi-1/telemetry", "publish") == "deny"
    assert result("pi-1", "edgekit/lab/pi-1/cmd", "publish") == "deny"
    assert result("pi-1", "edgekit/lab/pi-1/cmd", "subscribe") == "allow"
    assert result("pi-1", "edgekit/lab/pi-1/telemetry", "subscribe") == "deny"
    assert result("pi-1", "edgekit/lab/+/cmd", "subscribe") == "deny"
    assert result("pi-1", "edgekit/#", "subscribe") == "deny"
    assert result("pi-1", "edgekit/lab/pi-1/+", "publish") == "deny"
    assert result("ghost", "edgekit/lab/ghost/telemetry", "publish") == "deny"


def test_emqx_authz_follows_the_service_users_rules(client, logins):
    def result(topic, action):
        return emqx_authz(client, "edgekit-cloud", topic, action).json()["result"]

    assert result("$share/edgekit-ingest/edgekit/+/+/telemetry", "subscribe") == "allow"
    assert result("edgekit/+/+/#", "subscribe") == "allow"
    assert result("edgekit/lab/pi-1/cmd", "publish") == "allow"
    assert result("edgekit/lab/_events/rollout", "publish") == "allow"
    assert result("edgekit/lab/pi-1/telemetry", "publish") == "deny"
    assert result("#", "subscribe") == "deny"
    assert result("$SYS/broker/uptime", "subscribe") == "deny"


def test_a_removed_device_is_refused_at_its_next_request(client, logins, engine):
    assert emqx_authn(client, "pi-1", logins["pi-1"]).json()["result"] == "allow"
    with transaction(engine) as conn:
        remove_device(conn, "pi-1")
    assert emqx_authn(client, "pi-1", logins["pi-1"]).json()["result"] == "deny"
    assert emqx_authz(client, "pi-1", "edgekit/lab/pi-1/telemetry", "publish") \
        .json()["result"] == "deny"


@pytest.mark.parametrize("m5", ["", "_m5"])
def test_vernemq_register_and_publish(client, logins, m5):
    ok, refused = {"result": "ok"}, {"result": {"error": "not_allowed"}}
    assert register(client, "pi-1", logins["pi-1"], "auth_on_register" + m5).json() == ok
    assert register(client, "pi-1", "wrong", "auth_on_register" + m5).json() == refused
    assert register(client, "ghost", "x", "auth_on_register" + m5).json() == refused
    assert publish(client, "pi-1", "edgekit/lab/pi-1/status", "auth_on_publish" + m5).json() \
        == ok
    assert publish(client, "pi-1", "edgekit/lab/pi-2/status", "auth_on_publish" + m5).json() \
        == refused


def test_vernemq_subscribe_refuses_topic_by_topic(client, logins):
    assert subscribe(client, "pi-1", ["edgekit/lab/pi-1/cmd"]).json() == {"result": "ok"}
    got = subscribe(client, "pi-1", ["edgekit/lab/pi-1/cmd", "edgekit/lab/pi-2/cmd"]).json()
    assert got == {"result": "ok", "topics": [{"topic": "edgekit/lab/pi-1/cmd", "qos": 1},
                                              {"topic": "edgekit/lab/pi-2/cmd", "qos": 128}]}
    got = subscribe(client, "pi-1", ["edgekit/#"], "auth_on_subscribe_m5").json()
    assert got == {"result": "ok",
                   "modifiers": {"topics": [{"topic": "edgekit/#", "qos": 135}]}}


def test_one_vernemq_endpoint_dispatches_on_the_hook_header(client, logins):
    got = client.post(VERNE, headers={"vernemq-hook": "auth_on_register"}, json={
        "username": "pi-1", "password": logins["pi-1"], "client_id": "c", "mountpoint": ""})
    assert got.json() == {"result": "ok"}
    got = client.post(VERNE, headers={"vernemq-hook": "on_deliver"}, json={})
    assert got.status_code == 404 and "auth_on_register" in got.json()["error"]


@pytest.mark.parametrize("path", [f"{EMQX}/authn", f"{EMQX}/authz",
                                  f"{VERNE}/auth_on_register", f"{VERNE}/auth_on_subscribe"])
def test_a_malformed_body_is_a_400_with_one_line(client, logins, path):
    got = client.post(path, content=b'{"username": "pi-1", "password": ',
                      headers={"Content-Type": "application/json"})
    assert got.status_code == 400
    error = got.json()["error"]
    assert error.startswith("the body is not JSON") and "\n" not in error


def test_a_missing_field_is_a_400_naming_it(client, logins):
    got = client.post(f"{EMQX}/authz", json={"username": "pi-1", "action": "publish"})
    assert got.status_code == 400 and got.json() == {"error": "field 'topic': Field required"}
    got = client.post(f"{EMQX}/authz", json={"username": "pi-1", "topic": "t", "action": "x"})
    assert got.status_code == 400 and got.json()["error"].startswith("field 'action'")
    got = client.post(f"{VERNE}/auth_on_subscribe", json=[1, 2])
    assert got.status_code == 400


def test_passwords_never_reach_the_log_or_an_answer(client, logins, caplog):
    caplog.set_level(logging.DEBUG)
    secret = logins["pi-1"]
    answers = [emqx_authn(client, "pi-1", secret).text, register(client, "pi-2", secret).text,
               client.post(f"{EMQX}/authn", content=f'{{"password": "{secret}", '.encode()).text,
               client.post(f"{EMQX}/authn", json={"username": "pi-1", "password": [secret]}).text]
    assert all(secret not in text for text in answers)
    assert secret not in caplog.text


def test_unknown_users_can_be_left_to_the_next_authenticator(cloud_cfg, engine, logins):
    from cloud_sync.api import create_app

    cfg = cloud_cfg.model_copy(update={"broker_auth": cloud_cfg.broker_auth.model_copy(
        update={"http": cloud_cfg.broker_auth.http.model_copy(
            update={"unknown_user": "ignore", "cache_max_age_s": 30})})})
    with TestClient(create_app(cfg, engine, api_token="t" * 20)) as c:
        assert emqx_authn(c, "ghost", "x").json()["result"] == "ignore"
        assert emqx_authz(c, "ghost", "a/b", "publish").json()["result"] == "ignore"
        assert register(c, "ghost", "x").json() == {"result": "next"}
        assert emqx_authn(c, "pi-1", "wrong").json()["result"] == "deny"
        allowed = register(c, "pi-1", logins["pi-1"])
        assert allowed.headers["cache-control"] == "max-age=30"
        assert "cache-control" not in register(c, "pi-1", "wrong").headers


def test_a_configured_secret_is_required(cloud_cfg, engine, logins, monkeypatch):
    from cloud_sync.api import create_app

    monkeypatch.setenv("EDGEKIT_BROKER_AUTH_SECRET", "broker-Secret-77aa")
    with TestClient(create_app(cloud_cfg, engine, api_token="t" * 20)) as c:
        body = {"username": "pi-1", "password": logins["pi-1"]}
        refused = c.post(f"{EMQX}/authn", json=body)
        assert refused.status_code == 401 and "X-Edgekit-Broker-Secret" in refused.json()["error"]
        assert c.post(f"{EMQX}/authn", json=body,
                      headers={"X-Edgekit-Broker-Secret": "nope"}).status_code == 401
        assert c.post(f"{EMQX}/authn", json=body, headers={
            "X-Edgekit-Broker-Secret": "broker-Secret-77aa"}).json()["result"] == "allow"
        assert c.post(f"{EMQX}/authn", json=body, headers={
            "Authorization": "Bearer broker-Secret-77aa"}).json()["result"] == "allow"
        assert c.post(f"{VERNE}/auth_on_register?secret=broker-Secret-77aa", json={
            **body, "client_id": "c", "mountpoint": ""}).json() == {"result": "ok"}
        bad = c.post(f"{EMQX}/authn", content=b"{", headers={"X-Edgekit-Broker-Secret": "n"})
        assert bad.status_code == 401  # the secret is checked before the body is read


def test_the_endpoints_are_in_the_openapi_spec(client):
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {f"{EMQX}/authn", f"{EMQX}/authz", f"{VERNE}/{{hook}}"} <= paths
