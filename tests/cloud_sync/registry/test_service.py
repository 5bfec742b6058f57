"""The cloud's own broker user: created once, password in a 0600 file, rotatable."""

from __future__ import annotations

import pytest

from cloud_sync.errors import RegistryError
from cloud_sync.registry import (
    add_device,
    ensure_service_account,
    read_service_password,
    verify_password,
)
from cloud_sync.registry.service import service_hashes
from cloud_sync.store import transaction


def test_created_once_with_a_private_password_file(engine, tmp_path):
    path = tmp_path / "data" / "mqtt-service.password"
    with transaction(engine) as conn:
        first = ensure_service_account(conn, "edgekit-cloud", path)
        second = ensure_service_account(conn, "edgekit-cloud", path)
        hashed = service_hashes(conn)["edgekit-cloud"]
    assert first.created and not second.created
    assert path.stat().st_mode & 0o777 == 0o600
    assert verify_password(read_service_password(path, {}), hashed)


def test_rotation_changes_the_password(engine, tmp_path):
    path = tmp_path / "pw"
    with transaction(engine) as conn:
        ensure_service_account(conn, "edgekit-cloud", path)
        old = path.read_text()
        assert ensure_service_account(conn, "edgekit-cloud", path, rotate=True).created
        assert path.read_text() != old
        assert verify_password(path.read_text().strip(), service_hashes(conn)["edgekit-cloud"])


def test_env_overrides_the_file_and_a_missing_file_says_how_to_fix(tmp_path):
    assert read_service_password(tmp_path / "none", {"EDGEKIT_CLOUD_MQTT_PASSWORD": "p"}) == "p"
    with pytest.raises(RegistryError, match="EDGEKIT_CLOUD_MQTT_PASSWORD"):
        read_service_password(tmp_path / "none", {})


def test_service_user_cannot_shadow_a_device(engine, tmp_path):
    with pytest.raises(RegistryError, match="a device is called"), transaction(engine) as conn:
        add_device(conn, "edgekit-cloud", "lab")
        ensure_service_account(conn, "edgekit-cloud", tmp_path / "pw")
