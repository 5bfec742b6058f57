"""The registry: devices and their broker credentials, the cloud's service user, broker
ACL files, and models with their bundles and artifacts."""

from __future__ import annotations

from cloud_sync.registry.broker import BrokerFiles, render_acl, render_passwd, write_broker_config
from cloud_sync.registry.credentials import mosquitto_hash, new_password, verify_password
from cloud_sync.registry.devices import (
    STATES,
    Device,
    NewCredentials,
    Sighting,
    add_device,
    get_device,
    list_devices,
    record_seen,
    record_status,
    remove_device,
)
from cloud_sync.registry.models import (
    BundleRecord,
    ModelVersion,
    get_model,
    list_models,
    register_bundle,
)
from cloud_sync.registry.service import (
    ServiceAccount,
    ensure_service_account,
    read_service_password,
)

__all__ = [
    "STATES", "BrokerFiles", "BundleRecord", "Device", "ModelVersion", "NewCredentials",
    "ServiceAccount", "Sighting", "add_device", "ensure_service_account", "get_device",
    "get_model", "list_devices", "list_models", "mosquitto_hash", "new_password",
    "read_service_password", "record_seen", "record_status", "register_bundle",
    "remove_device", "render_acl", "render_passwd", "verify_password", "write_broker_config",
]
