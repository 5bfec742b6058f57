"""The cloud's own broker user (``edgekit-cloud`` by default): reads every device topic,
writes every command.

Its password is created once, kept as a hash in the store (for the broker files) and
in plain text in ``<data dir>/mqtt-service.password`` (mode 0600) for ``cloud serve``
on this host; elsewhere give it as ``EDGEKIT_CLOUD_MQTT_PASSWORD``. ``rotate=True``
makes a new one (rewrite the broker files and reload the broker afterwards).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.errors import RegistryError
from cloud_sync.registry.credentials import mosquitto_hash, new_password
from cloud_sync.registry.devices import check_ids
from cloud_sync.store.schema import devices, service_accounts
from edge_agent.bundle.archive import atomic_write


@dataclass(frozen=True)
class ServiceAccount:
    """The cloud's broker user; ``created`` is True when this call made (or rotated) it."""

    username: str
    password_file: Path
    created: bool


def ensure_service_account(conn: Connection, username: str, password_file: Path,
                           rotate: bool = False, now: float | None = None) -> ServiceAccount:
    """Create the service user (or a new password with ``rotate``); the password goes to
    ``password_file`` (0600) before the hash is stored, in the caller's transaction."""
    check_ids(username)
    row = conn.execute(sa.select(service_accounts)
                       .where(service_accounts.c.username == username)).first()
    if row is not None and not rotate:
        return ServiceAccount(username, Path(password_file), created=False)
    if conn.execute(sa.select(devices.c.id).where(devices.c.id == username)).first():
        raise RegistryError(f"a device is called {username!r}; choose another service_user")
    password = new_password()
    path = Path(password_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (password + "\n").encode(), mode=0o600)
    values = {"credential_hash": mosquitto_hash(password),
              "created_at": time.time() if now is None else now}
    if row is None:
        conn.execute(sa.insert(service_accounts).values(username=username, **values))
    else:
        conn.execute(sa.update(service_accounts)
                     .where(service_accounts.c.username == username).values(**values))
    return ServiceAccount(username, path, created=True)


def service_hashes(conn: Connection) -> dict[str, str]:
    """Every service user and its credential hash."""
    return dict(conn.execute(sa.select(service_accounts.c.username,
                                       service_accounts.c.credential_hash)).all())


def read_service_password(password_file: Path, env: dict[str, str]) -> str:
    """The service password: ``EDGEKIT_CLOUD_MQTT_PASSWORD`` if set, else the file."""
    if env.get("EDGEKIT_CLOUD_MQTT_PASSWORD"):
        return env["EDGEKIT_CLOUD_MQTT_PASSWORD"]
    try:
        return Path(password_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise RegistryError(f"cannot read the cloud's MQTT password from {password_file} "
                            f"({exc.strerror}); set EDGEKIT_CLOUD_MQTT_PASSWORD or run "
                            "'edgekit cloud broker-config --rotate-service-password'") from None
