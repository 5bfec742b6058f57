"""CloudConfig: documented defaults, files, flags over files, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_sync.config import CloudConfig, default_data_dir
from edge_agent.errors import ConfigError


def test_data_dir_from_env_else_xdg_else_home(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKIT_CLOUD_DIR", str(tmp_path / "cloud"))
    assert default_data_dir() == tmp_path / "cloud"
    monkeypatch.delenv("EDGEKIT_CLOUD_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "edgekit" / "cloud"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_data_dir() == Path.home() / ".local" / "share" / "edgekit" / "cloud"


def test_defaults_derive_from_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKIT_CLOUD_DIR", str(tmp_path))
    cfg = CloudConfig.load()
    assert cfg.db_url == f"sqlite:///{tmp_path / 'edgekit.db'}"
    assert cfg.artifacts_dir == tmp_path / "artifacts"
    assert cfg.service_password_file == tmp_path / "mqtt-service.password"
    assert cfg.workers == 1 and cfg.retention.telemetry_max_rows_per_device > 0


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "cloud.yaml"
    path.write_text("db: postgresql://u@h/db\nworkers: 4\nretention:\n  samples_max_rows: 5\n")
    cfg = CloudConfig.load(path, db="sqlite:////tmp/x.db", workers=None)
    assert cfg.db_url == "sqlite:////tmp/x.db" and cfg.workers == 4
    assert cfg.retention.samples_max_rows == 5


@pytest.mark.parametrize("doc, message", [
    ({"wokers": 2}, "field 'wokers'"),
    ({"workers": 0}, "field 'workers'"),
    ({"retention": {"telemetry_max_rows_per_device": -1}},
     "field 'retention.telemetry_max_rows_per_device'"),
])
def test_bad_settings_name_the_field(tmp_path, doc, message):
    path = tmp_path / "cloud.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=message) as info:
        CloudConfig.load(path)
    assert "\n" not in str(info.value)


def test_unreadable_config_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        CloudConfig.load(tmp_path / "missing.json")
    (tmp_path / "bad.yaml").write_text("a: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        CloudConfig.load(tmp_path / "bad.yaml")


def test_the_api_token_comes_from_the_config_file_and_is_not_shown(tmp_path):
    from cloud_sync.api.settings import ApiSettings
    from cloud_sync.config import CloudConfig

    path = tmp_path / "cloud.yaml"
    path.write_text("api_token: a-long-enough-secret-token\n")
    cfg = CloudConfig.load(path, data_dir=tmp_path)
    assert cfg.api_token == "a-long-enough-secret-token"
    assert "a-long-enough-secret-token" not in repr(cfg)
    assert ApiSettings.resolve(cfg).token == "a-long-enough-secret-token"
