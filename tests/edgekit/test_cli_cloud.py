"""``edgekit cloud``: device add/list/remove and broker-config, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgekit.cli.main import app
from tests.cli import run_main
from tests.databases import db_url, pg_admin_url  # noqa: F401 (fixtures)

runner = CliRunner()


def cloud(*args: str):
    """Run ``edgekit cloud ARGS`` in-process."""
    return runner.invoke(app, ["cloud", *args])


def test_add_list_remove_round_trip(db_url):  # noqa: F811
    added = cloud("device", "add", "pi-1", "--fleet", "lab", "--db", db_url, "--json")
    assert added.exit_code == 0, added.output
    creds = json.loads(added.stdout)
    assert creds["username"] == "pi-1" and len(creds["password"]) >= 32
    assert cloud("device", "add", "pi-2", "--fleet", "field", "--db", db_url).exit_code == 0
    listed = json.loads(cloud("device", "list", "--db", db_url, "--json").stdout)
    assert [(d["id"], d["fleet"], d["has_credentials"]) for d in listed] == [
        ("pi-2", "field", True), ("pi-1", "lab", True)]
    assert "password" not in json.dumps(listed)
    table = cloud("device", "list", "--fleet", "lab", "--db", db_url)
    assert "pi-1" in table.stdout and "pi-2" not in table.stdout
    assert cloud("device", "remove", "pi-1", "--db", db_url).exit_code == 0
    assert [d["id"] for d in json.loads(cloud("device", "list", "--db", db_url,
                                              "--json").stdout)] == ["pi-2"]


def test_default_store_is_sqlite_in_edgekit_cloud_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKIT_CLOUD_DIR", str(tmp_path))
    assert cloud("device", "add", "pi-1", "--fleet", "lab").exit_code == 0
    assert (tmp_path / "edgekit.db").exists()


def test_broker_config_writes_the_three_files(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKIT_CLOUD_DIR", str(tmp_path / "data"))
    cloud("device", "add", "pi-1", "--fleet", "lab")
    result = cloud("broker-config", "--out", str(tmp_path / "broker"), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["devices"] == 1 and doc["service_password_created"]
    passwd = (tmp_path / "broker" / "passwd").read_text()
    assert passwd.startswith("edgekit-cloud:$7$101$") and "\npi-1:$7$" in passwd
    assert "topic read edgekit/lab/pi-1/cmd" in (tmp_path / "broker" / "acl").read_text()
    conf = (tmp_path / "broker" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and f"acl_file {tmp_path / 'broker' / 'acl'}" in conf
    assert (tmp_path / "data" / "mqtt-service.password").stat().st_mode & 0o777 == 0o600
    again = json.loads(cloud("broker-config", "--out", str(tmp_path / "broker"), "--json").stdout)
    assert not again["service_password_created"]


@pytest.mark.parametrize("args, message", [
    (["device", "add", "bad id", "--fleet", "lab"], "device id 'bad id' is not valid"),
    (["device", "remove", "pi-9"], "no device 'pi-9' is registered"),
    (["device", "list", "--db", "mysql://u@h/db"], "scheme 'mysql' is not supported"),
    (["device", "list", "--db", "postgresql://u@127.0.0.1:1/db"], "cannot reach database"),
])
def test_bad_input_is_one_line(monkeypatch, tmp_path, capsys, args, message):
    monkeypatch.setenv("EDGEKIT_CLOUD_DIR", str(tmp_path))
    assert run_main("cloud", *args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_duplicate_add_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EDGEKIT_CLOUD_DIR", str(tmp_path))
    assert run_main("cloud", "device", "add", "pi-1", "--fleet", "lab") == 0
    capsys.readouterr()
    assert run_main("cloud", "device", "add", "pi-1", "--fleet", "lab") == 1
    assert "already exists" in capsys.readouterr().err
