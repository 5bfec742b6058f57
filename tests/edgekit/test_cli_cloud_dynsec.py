"""``edgekit cloud device add/remove --dynsec`` and ``cloud dynsec-sync`` against a real
mosquitto with the dynamic-security plugin: the broker changes with no reload, and a
refused broker leaves the registry as it was."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgekit.cli.main import app
from tests.cli import run_main
from tests.cloud_sync.registry.test_dynsec import (  # noqa: F401
    ADMIN_PASSWORD,
    Device,
    broker,
    pytestmark,
)

runner = CliRunner()


@pytest.fixture()
def cloud(tmp_path, broker, monkeypatch):  # noqa: F811
    """``edgekit cloud ARGS`` with a config that points dynsec at the test broker."""
    monkeypatch.setenv("EDGEKIT_DYNSEC_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("EDGEKIT_CLOUD_DIR", str(tmp_path / "cloud"))
    config = tmp_path / "cloud.json"
    config.write_text(json.dumps({"broker": broker.url, "broker_auth": {
        "dynsec": {"enabled": True, "timeout_s": 5}}}))

    def run(*args: str):
        return runner.invoke(app, ["cloud", *args, "--config", str(config)])
    return run


def test_add_and_remove_change_the_broker_live(cloud, broker):  # noqa: F811
    added = cloud("device", "add", "pi-1", "--fleet", "lab", "--json")
    assert added.exit_code == 0, added.output
    creds = json.loads(added.stdout)
    assert creds["broker_updated"] is True
    device = Device(broker.port, "pi-1", creds["password"])
    assert device.accepted
    assert not device.publish("edgekit/lab/pi-1/telemetry").is_failure
    removed = cloud("device", "remove", "pi-1")
    assert removed.exit_code == 0 and "disconnected" in removed.stdout
    assert device.gone.wait(5)
    assert not Device(broker.port, "pi-1", creds["password"]).accepted


def test_no_dynsec_flag_only_writes_the_registry(cloud, broker):  # noqa: F811
    added = cloud("device", "add", "pi-1", "--fleet", "lab", "--no-dynsec", "--json")
    assert json.loads(added.stdout)["broker_updated"] is False
    assert not Device(broker.port, "pi-1", json.loads(added.stdout)["password"]).accepted
    synced = cloud("dynsec-sync", "--json")
    assert synced.exit_code == 0, synced.output
    assert json.loads(synced.stdout)["needs_password"] == ["pi-1"]


def test_a_refused_broker_leaves_no_device_behind(cloud, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EDGEKIT_DYNSEC_PASSWORD", "wrong-Passw0rd")
    assert run_main("cloud", "device", "add", "pi-1", "--fleet", "lab",
                    "--config", tmp_path / "cloud.json") == 1
    err = capsys.readouterr().err
    assert "refused the dynsec admin" in err and len(err.strip().splitlines()) == 1
    assert "wrong-Passw0rd" not in err and "Traceback" not in err
    listed = cloud("device", "list", "--json")
    assert json.loads(listed.stdout) == []
