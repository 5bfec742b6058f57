"""Answers for brokers that ask over HTTP (EMQX, VerneMQ): who is this login, may it
publish or subscribe here. From the registry, with the rules of ``topic_rules``.

One indexed lookup per question (a device by id; the service user only when no device
has that name). Passwords are checked against the stored Mosquitto ``$7$`` hash in
constant time; at the registry's 101 PBKDF2 iterations that costs about 0.15 ms, so
nothing is cached (and a removed device is refused on its very next request).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.registry.credentials import verify_password
from cloud_sync.registry.topic_rules import (
    Rule,
    device_rules,
    may_publish,
    may_subscribe,
    service_rules,
)
from cloud_sync.store.schema import devices, service_accounts


@dataclass(frozen=True)
class Account:
    """A broker login the registry knows: a device with credentials or a service user."""

    username: str
    kind: str  # "device" | "service"
    credential_hash: str
    rules: tuple[Rule, ...]

    def password_ok(self, password: str | None) -> bool:
        """True when ``password`` matches the stored hash (constant-time)."""
        return bool(password) and verify_password(password, self.credential_hash)

    def may_publish(self, topic: str) -> bool:
        return may_publish(self.rules, topic)

    def may_subscribe(self, topic_filter: str) -> bool:
        return may_subscribe(self.rules, topic_filter)


def find_account(conn: Connection, username: str | None) -> Account | None:
    """The device (with credentials) or service user called ``username``, or None."""
    if not username:
        return None
    row = conn.execute(sa.select(devices.c.fleet, devices.c.credential_hash)
                       .where(devices.c.id == username)).first()
    if row is not None:
        if row.credential_hash is None:  # seen on the broker, never given credentials
            return None
        return Account(username, "device", row.credential_hash,
                       device_rules(username, row.fleet))
    hashed = conn.execute(sa.select(service_accounts.c.credential_hash)
                          .where(service_accounts.c.username == username)).scalar()
    return None if hashed is None else Account(username, "service", hashed, service_rules())
