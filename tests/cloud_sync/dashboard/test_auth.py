"""Who may see the dashboard: the API token as a bearer header or as the login cookie;
no token sends a browser to the login form, a wrong one gets a one-line error."""

from __future__ import annotations

from tests.cloud_sync.dashboard.conftest import AUTH, TOKEN


def test_without_a_token_a_browser_is_sent_to_the_login_form(client):
    answer = client.get("/dashboard/devices?state=online", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == \
        "/dashboard/login?next=%2Fdashboard%2Fdevices%3Fstate%3Donline"
    form = client.get(answer.headers["location"])
    assert form.status_code == 200 and 'name="token"' in form.text
    assert 'value="/dashboard/devices?state=online"' in form.text
    htmx = client.get("/dashboard/devices", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/dashboard/login")


def test_a_wrong_token_gets_the_form_again_with_one_error_line(client):
    for token, error in (("nope", "wrong token; use the server&#39;s EDGEKIT_API_TOKEN"),
                         ("", "enter the API token")):
        answer = client.post("/dashboard/login", data={"token": token, "next": "/dashboard/"},
                             follow_redirects=False)
        assert answer.status_code == 401 and error in answer.text
        assert "set-cookie" not in answer.headers
    wrong_bearer = client.get("/dashboard/", headers={"Authorization": "Bearer nope"},
                              follow_redirects=False)
    assert wrong_bearer.status_code == 303


def test_the_right_token_sets_an_httponly_cookie_that_opens_every_page(client):
    answer = client.post("/dashboard/login", data={"token": TOKEN, "next": "/dashboard/rollouts"},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/rollouts"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    for path in ("/dashboard/", "/dashboard/devices", "/dashboard/triggers", "/dashboard/rollouts"):
        assert client.get(path, follow_redirects=False).status_code == 200, path
    out = client.post("/dashboard/logout", follow_redirects=False)
    assert out.status_code == 303 and 'edgekit_token=""' in out.headers["set-cookie"]
    client.cookies.clear()
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303


def test_bearer_header_works_and_next_never_leaves_the_dashboard(client):
    assert client.get("/dashboard/devices", headers=AUTH).status_code == 200
    for bad in ("https://evil.example/", "//evil.example/x", "/api/v1/devices"):
        answer = client.post("/dashboard/login", data={"token": TOKEN, "next": bad},
                             follow_redirects=False)
        assert answer.headers["location"] == "/dashboard/", bad


def test_root_redirects_to_the_dashboard_and_static_files_are_served(client):
    assert client.get("/", follow_redirects=False).headers["location"] == "/dashboard/"
    uplot = client.get("/dashboard/static/vendor/uplot-1.6.32/uPlot.iife.min.js")
    assert uplot.status_code == 200 and "uPlot" in uplot.text
    assert client.get("/dashboard/static/vendor/htmx-2.0.11/htmx.min.js").status_code == 200
    assert client.get("/dashboard/static/charts.js").status_code == 200


def test_a_server_without_a_token_says_how_to_set_one(cloud_cfg, engine, monkeypatch):
    from fastapi.testclient import TestClient

    from cloud_sync.api import create_app

    monkeypatch.delenv("EDGEKIT_API_TOKEN", raising=False)
    with TestClient(create_app(cloud_cfg, engine)) as client:
        answer = client.post("/dashboard/login", data={"token": "anything"},
                             follow_redirects=False)
        assert answer.status_code == 401
        assert "this server has no API token; start it with EDGEKIT_API_TOKEN set" in answer.text
        assert client.get("/dashboard/", follow_redirects=False).status_code == 303
