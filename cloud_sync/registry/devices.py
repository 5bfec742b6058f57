"""The device registry: devices added by hand (with credentials) or seen on the broker.

A device's MQTT username is its id. ``add_device`` makes a password, keeps only its
Mosquitto hash and returns the password once. Ingest calls ``record_seen`` (batch
upsert: auto-registers unknown devices) and ``record_status``. All functions take a
Connection inside the caller's transaction (``store.transaction``).

``incarnation`` is the device's newest outbox incarnation (protocol 1.2; ``""`` before),
the one whose statuses the row shows: ingest switches it on the first status of an
incarnation that never had one applied (``ingest.batch``), so a re-imaged device whose
seqs start again at 1 still updates its row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.errors import RegistryError
from cloud_sync.registry.credentials import mosquitto_hash, new_password
from cloud_sync.store import arrays
from cloud_sync.store.schema import devices, service_accounts
from cloud_sync.store.writes import UPSERTS
from edge_agent import protocol
from edge_agent.errors import ProtocolError

STATES = ("unknown", "online", "offline", "stale", "degraded", "updating")


@dataclass(frozen=True)
class Device:
    """One registered device as the registry knows it."""

    id: str
    fleet: str
    state: str
    registered_by: str
    has_credentials: bool
    created_at: float
    profile: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    agent_version: str | None = None
    first_seen: float | None = None
    last_seen: float | None = None
    incarnation: str = ""

    @classmethod
    def from_row(cls, row: Any) -> Device:
        """From a ``devices`` row."""
        data = dict(row._mapping)
        data["has_credentials"] = data.pop("credential_hash") is not None
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class NewCredentials:
    """What a device needs to log in to the broker; the password is shown only once."""

    device_id: str
    fleet: str
    username: str
    password: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Sighting:
    """A device seen on the broker (from any message of it) at ``at``."""

    device_id: str
    fleet: str
    at: float


def check_ids(device_id: str, fleet: str | None = None) -> None:
    """RegistryError unless the ids are valid in topics (letters, digits, '_', '.', '-')."""
    try:
        protocol.check_id(device_id, "device id")
        if fleet is not None:
            protocol.check_id(fleet, "fleet")
    except ProtocolError as exc:
        raise RegistryError(str(exc)) from None


def get_device(conn: Connection, device_id: str) -> Device | None:
    """The device with this id, or None."""
    row = conn.execute(sa.select(devices).where(devices.c.id == device_id)).first()
    return Device.from_row(row) if row else None


def list_devices(conn: Connection, fleet: str | None = None) -> list[Device]:
    """Every device (of ``fleet`` if given), by fleet then id."""
    query = sa.select(devices).order_by(devices.c.fleet, devices.c.id)
    if fleet is not None:
        query = query.where(devices.c.fleet == fleet)
    return [Device.from_row(row) for row in conn.execute(query)]


def add_device(conn: Connection, device_id: str, fleet: str, now: float | None = None
               ) -> NewCredentials:
    """Register a device with fresh credentials (or give credentials to one that registered
    itself in the same fleet); RegistryError for a bad id, a duplicate or a reserved name."""
    check_ids(device_id, fleet)
    _refuse_service_name(conn, device_id)
    password, now = new_password(), time.time() if now is None else now
    existing = get_device(conn, device_id)
    if existing is None:
        conn.execute(sa.insert(devices).values(
            id=device_id, fleet=fleet, registered_by="cli", created_at=now,
            credential_hash=mosquitto_hash(password)))
    elif existing.has_credentials or existing.fleet != fleet:
        raise RegistryError(f"device {device_id!r} already exists (fleet {existing.fleet!r}); "
                            "remove it first or pick another id")
    else:
        conn.execute(sa.update(devices).where(devices.c.id == device_id)
                     .values(credential_hash=mosquitto_hash(password)))
    return NewCredentials(device_id=device_id, fleet=fleet, username=device_id, password=password)


def _refuse_service_name(conn: Connection, name: str) -> None:
    query = sa.select(service_accounts.c.username).where(service_accounts.c.username == name)
    if conn.execute(query).first() is not None:
        raise RegistryError(f"{name!r} is the cloud's own broker user; pick another device id")


def remove_device(conn: Connection, device_id: str) -> Device:
    """Delete a device and its credentials (its history stays until retention removes it)."""
    check_ids(device_id)
    device = get_device(conn, device_id)
    if device is None:
        raise RegistryError(f"no device {device_id!r} is registered; "
                            "see 'edgekit cloud device list'")
    conn.execute(sa.delete(devices).where(devices.c.id == device_id))
    return device


def record_seen(conn: Connection, sightings: Sequence[Sighting]) -> dict[str, str]:
    """Auto-register unknown devices and widen ``first_seen``/``last_seen`` (one batch upsert).

    Returns ``device -> incarnation`` as stored; the rows stay locked until commit (on
    PostgreSQL), so what the caller decides from them no other writer decides at once."""
    if not sightings:
        return {}
    return SEEN_WRITERS.get(conn.dialect.name, _record_seen)(conn, _spans(sightings))


def _record_seen(conn: Connection, spans: dict[str, tuple[str, float, float]]
                 ) -> dict[str, str]:
    stmt = UPSERTS[conn.dialect.name](devices)
    new, old = stmt.excluded, devices.c
    stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={
        "last_seen": sa.case((old.last_seen.is_(None), new.last_seen),
                             (new.last_seen > old.last_seen, new.last_seen),
                             else_=old.last_seen),
        "first_seen": sa.case((old.first_seen.is_(None), new.first_seen),
                              (new.first_seen < old.first_seen, new.first_seen),
                              else_=old.first_seen)}).returning(old.id, old.incarnation)
    return dict(conn.execute(stmt, [{"id": device, "fleet": fleet, "registered_by": "auto",
                                     "state": "online", "first_seen": first,
                                     "last_seen": last, "created_at": first}
                                    for device, (fleet, first, last) in spans.items()]).all())


SEEN_WRITERS: dict[str, Callable[[Connection, dict[str, tuple[str, float, float]]],
                                 dict[str, str]]] = {"postgresql": arrays.record_seen}


def set_incarnations(conn: Connection, newest: Mapping[str, str]) -> None:
    """Make ``newest[device]`` the incarnation each device's row follows from now on."""
    for device_id, incarnation in sorted(newest.items()):
        conn.execute(sa.update(devices).where(devices.c.id == device_id)
                     .values(incarnation=incarnation))


def _spans(sightings: Sequence[Sighting]) -> dict[str, tuple[str, float, float]]:
    """device -> (fleet, first, last): one row per device (an upsert may touch a row once)."""
    spans: dict[str, tuple[str, float, float]] = {}
    for s in sightings:
        _fleet, first, last = spans.get(s.device_id, (s.fleet, s.at, s.at))
        spans[s.device_id] = (s.fleet, min(first, s.at), max(last, s.at))
    return spans


def record_status(conn: Connection, device_id: str, state: str, **facts: str | None) -> None:
    """Set a device's state and what it reported (profile, model_name, model_version,
    agent_version); facts given as None are left as they were."""
    if state not in STATES:
        raise RegistryError(f"unknown device state {state!r}; one of {', '.join(STATES)}")
    unknown = set(facts) - {"profile", "model_name", "model_version", "agent_version"}
    if unknown:
        raise RegistryError(f"unknown device fields {sorted(unknown)}")
    values = {k: v for k, v in facts.items() if v is not None}
    conn.execute(sa.update(devices).where(devices.c.id == device_id).values(state=state, **values))
