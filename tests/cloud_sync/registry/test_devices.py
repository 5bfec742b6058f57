"""The device registry: add (credentials once), list, remove, auto-registration, status."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cloud_sync.errors import RegistryError
from cloud_sync.registry import (
    Sighting,
    add_device,
    ensure_service_account,
    get_device,
    list_devices,
    record_seen,
    record_status,
    remove_device,
    verify_password,
)
from cloud_sync.store import transaction
from cloud_sync.store.schema import devices


def test_add_stores_only_a_hash_and_returns_the_password_once(engine):
    with transaction(engine) as conn:
        creds = add_device(conn, "pi-1", "lab", now=10.0)
    assert (creds.username, creds.fleet) == ("pi-1", "lab") and len(creds.password) >= 32
    with engine.connect() as conn:
        stored = conn.execute(sa.select(devices.c.credential_hash)).scalar_one()
        device = get_device(conn, "pi-1")
    assert creds.password not in stored and verify_password(creds.password, stored)
    assert (device.registered_by, device.state, device.created_at) == ("cli", "unknown", 10.0)
    assert device.has_credentials


def test_list_by_fleet_and_remove(engine):
    with transaction(engine) as conn:
        for device, fleet in (("b", "lab"), ("a", "lab"), ("c", "field")):
            add_device(conn, device, fleet)
    with transaction(engine) as conn:
        assert [d.id for d in list_devices(conn)] == ["c", "a", "b"]
        assert [d.id for d in list_devices(conn, "lab")] == ["a", "b"]
        assert remove_device(conn, "a").fleet == "lab"
        assert [d.id for d in list_devices(conn)] == ["c", "b"]


@pytest.mark.parametrize("device, fleet, message", [
    ("bad id", "lab", "device id 'bad id' is not valid"),
    ("pi-1", "lab/x", "fleet 'lab/x' is not valid"),
    ("-pi", "lab", "is not valid"),
    ("x" * 65, "lab", "is not valid"),
])
def test_bad_ids_are_refused(engine, device, fleet, message):
    with pytest.raises(RegistryError, match=message), transaction(engine) as conn:
        add_device(conn, device, fleet)


def test_duplicates_and_unknown_devices_are_clear_errors(engine, tmp_path):
    with transaction(engine) as conn:
        add_device(conn, "pi-1", "lab")
        ensure_service_account(conn, "edgekit-cloud", tmp_path / "pw")
    with pytest.raises(RegistryError, match=r"already exists.*remove it first"), \
            transaction(engine) as conn:
        add_device(conn, "pi-1", "lab")
    with pytest.raises(RegistryError, match="cloud's own broker user"), \
            transaction(engine) as conn:
        add_device(conn, "edgekit-cloud", "lab")
    with pytest.raises(RegistryError, match=r"no device 'pi-9'.*device list"), \
            transaction(engine) as conn:
        remove_device(conn, "pi-9")


def test_devices_register_themselves_when_seen(engine):
    with transaction(engine) as conn:
        record_seen(conn, [Sighting("pi-1", "lab", 5.0), Sighting("pi-1", "lab", 7.0),
                           Sighting("pi-2", "lab", 6.0)])
    with transaction(engine) as conn:
        record_seen(conn, [Sighting("pi-1", "lab", 6.0), Sighting("pi-2", "lab", 9.0)])
        one, two = get_device(conn, "pi-1"), get_device(conn, "pi-2")
    assert (one.registered_by, one.first_seen, one.last_seen) == ("auto", 5.0, 7.0)
    assert (two.first_seen, two.last_seen, two.has_credentials) == (6.0, 9.0, False)


def test_an_auto_registered_device_can_get_credentials(engine):
    with transaction(engine) as conn:
        record_seen(conn, [Sighting("pi-1", "lab", 5.0)])
        add_device(conn, "pi-1", "lab")
        assert get_device(conn, "pi-1").has_credentials
    with pytest.raises(RegistryError, match="already exists"), transaction(engine) as conn:
        record_seen(conn, [Sighting("pi-2", "lab", 5.0)])
        add_device(conn, "pi-2", "field")


def test_record_status(engine):
    with transaction(engine) as conn:
        add_device(conn, "pi-1", "lab")
        record_status(conn, "pi-1", "degraded", model_name="digits", model_version="3",
                      profile=None)
        device = get_device(conn, "pi-1")
        assert (device.state, device.model_name, device.model_version) == ("degraded",
                                                                           "digits", "3")
        with pytest.raises(RegistryError, match="unknown device state"):
            record_status(conn, "pi-1", "sleepy")
