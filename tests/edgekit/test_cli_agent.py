"""``edgekit agent`` commands: service unit, config files, selftest."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edge_agent.errors import ConfigError
from edgekit.cli.agent import build_config
from edgekit.cli.main import app

runner = CliRunner()


def _config(tmp_path, keypair, suffix=".json", **over) -> object:
    doc = {"device_id": "pi-7", "fleet": "lab", "state_dir": str(tmp_path / "state"),
           "pubkeys": [str(keypair[1])], "broker": "mqtt://127.0.0.1:1883"}
    doc.update(over)
    path = tmp_path / f"agent{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(doc))
    else:
        import yaml

        path.write_text(yaml.safe_dump(doc))
    return path


def test_service_prints_a_systemd_unit(tmp_path, keypair):
    cfg = _config(tmp_path, keypair)
    result = runner.invoke(app, ["agent", "service", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    unit = result.stdout
    assert "Restart=always" in unit and "User=edgekit" in unit
    assert "StandardOutput=journal" in unit and f"--config {cfg.resolve()}" in unit
    assert f"ReadWritePaths={tmp_path / 'state'}" in unit


def test_service_install_writes_the_unit(tmp_path, keypair):
    cfg = _config(tmp_path, keypair, suffix=".yaml")
    units = tmp_path / "units"
    units.mkdir()
    result = runner.invoke(app, ["agent", "service", "--config", str(cfg), "--install",
                                 "--unit-dir", str(units), "--user", "pi"])
    assert result.exit_code == 0, result.output
    assert "User=pi" in (units / "edgekit-agent.service").read_text()


def test_flags_override_the_config_file(tmp_path, keypair):
    cfg = build_config(_config(tmp_path, keypair), fleet="other", telemetry_interval_s=2.0)
    assert (cfg.fleet, cfg.device_id, cfg.telemetry_interval_s) == ("other", "pi-7", 2.0)


def test_config_typos_are_one_clear_line(tmp_path, keypair):
    with pytest.raises(ConfigError, match="unknown agent setting 'telemetry_intervall_s'"):
        build_config(_config(tmp_path, keypair, telemetry_intervall_s=3))


def test_broken_config_file_is_clear(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        build_config(bad)


def test_selftest_runs_the_golden_check(make_onnx_bundle, keypair):
    result = runner.invoke(app, ["agent", "selftest", "--bundle", str(make_onnx_bundle("1")),
                                 "--pubkey", str(keypair[1])])
    assert result.exit_code == 0 and "golden max abs diff" in result.stdout
