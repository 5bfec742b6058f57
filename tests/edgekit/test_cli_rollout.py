"""``edgekit rollout start|status|list|abort`` against the real API app (in-process
TestClient): readable tables, JSON, one-line errors; /api/v1/devices shows each device's
model version (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from cloud_sync.api.app import create_app
from cloud_sync.config import CloudConfig
from cloud_sync.rollouts.machine import controller_step
from cloud_sync.store import open_store, transaction
from edgekit.cli import rollout as rollout_cli
from tests.cli import run_main
from tests.cloud_sync.rollouts.helpers import add_devices, publish_model
from tests.databases import db_url, pg_admin_url  # noqa: F401 (fixtures)

TOKEN = "rollout-cli-token-0123456789"
API = "http://cloud.test"


@pytest.fixture()
def api(db_url, tmp_path, monkeypatch):  # noqa: F811
    engine = open_store(db_url)
    with transaction(engine) as conn:
        add_devices(conn, ["d1", "d2", "d3"])
        publish_model(conn)
    web = create_app(CloudConfig(data_dir=tmp_path, db=db_url), engine, api_token=TOKEN)

    def client(api_url, token):
        return TestClient(web, base_url=api_url or API,
                          headers={"Authorization": f"Bearer {token or TOKEN}"})
    monkeypatch.setattr(rollout_cli, "_client", client)
    monkeypatch.setenv("EDGEKIT_API", API)
    monkeypatch.setenv("EDGEKIT_API_TOKEN", TOKEN)
    yield engine, web
    engine.dispose()


class Ran:
    """Exit status and output of one in-process run."""

    def __init__(self, capsys, args):
        self.exit_code = run_main("rollout", *args)
        out = capsys.readouterr()
        self.stdout, self.output = out.out, out.out + out.err


@pytest.fixture()
def rollout(capsys):
    return lambda *args: Ran(capsys, args)


def test_start_status_list_abort(api, rollout):
    engine, web = api
    started = rollout("start", "--model", "tiny", "--version", "2", "--fleet", "f1",
                      "--canary", "1", "--bake", "5", "--waves", "50,100", "--json")
    assert started.exit_code == 0, started.output
    doc = json.loads(started.stdout)
    assert doc["state"] == "pending" and doc["waves"] == [1, 2, 3]
    assert doc["policy"]["canary_count"] == 1 and doc["policy"]["bake_s"] == 5
    with transaction(engine) as conn:
        controller_step(conn, lambda *a: "http://x", 1.0)
        controller_step(conn, lambda *a: "http://x", 2.0)
    status = rollout("status", str(doc["id"]))
    assert status.exit_code == 0, status.output
    assert "state canary" in status.stdout and "d1" in status.stdout and "sent" in status.stdout
    assert "{" not in status.stdout and "[" not in status.stdout  # no raw dicts or lists
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  canary", status.stdout)  # dates
    listed = rollout("list")
    assert "tiny" in listed.stdout and "canary" in listed.stdout and "1 sent" in listed.stdout
    aborted = rollout("abort", str(doc["id"]))
    assert aborted.exit_code == 0 and "halted" in aborted.stdout
    after = rollout("status", str(doc["id"])).stdout
    assert re.search(r"d3\s+\d\s+not sent", after)  # never sent: it will not get v2
    devices = TestClient(web).get("/api/v1/devices",
                                  headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert {d["id"]: d["model_version"] for d in devices["items"]} == {
        "d1": "1", "d2": "1", "d3": "1"}


@pytest.mark.parametrize("args, message", [
    (("start", "--model", "tiny", "--version", "9", "--fleet", "f1"), "not published"),
    (("start", "--model", "tiny", "--version", "2", "--fleet", "nope"), "no registered"),
    (("start", "--model", "tiny", "--version", "2"), "exactly one of --fleet"),
    (("start", "--model", "tiny", "--version", "2", "--fleet", "f1", "--waves", "50"),
     "waves"),
    (("start", "--model", "tiny", "--version", "2", "--fleet", "f1", "--canary", "x%"),
     "--canary"),
    (("status", "42"), "no rollout 42"),
    (("abort", "42"), "no rollout 42"),
    (("list", "--token", "wrong"), "HTTP 401"),
])
def test_errors_are_one_line(api, rollout, args, message):
    result = rollout(*args)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_second_rollout_over_held_devices_is_refused_naming_the_open_one(api, rollout):
    first = rollout("start", "--model", "tiny", "--version", "2", "--devices", "d1,d2",
                    "--json")
    assert first.exit_code == 0, first.output
    rid = json.loads(first.stdout)["id"]
    second = rollout("start", "--model", "tiny", "--version", "2", "--fleet", "f1")
    assert second.exit_code != 0
    assert "HTTP 409" in second.output and f"rollout {rid} (tiny 2, pending) holds d1, d2" \
        in second.output and f"edgekit rollout abort {rid}" in second.output, second.output
    assert len(second.output.strip().splitlines()) == 1, second.output
    other = rollout("start", "--model", "tiny", "--version", "2", "--devices", "d3")
    assert other.exit_code == 0, other.output  # a device nobody holds
