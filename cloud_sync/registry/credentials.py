"""MQTT credentials: random passwords, stored only as Mosquitto 2.x PBKDF2 hashes.

The hash is exactly what Mosquitto's ``password_file`` holds
(``$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>``, a 12-byte salt,
as ``mosquitto_passwd`` writes it), so the broker files are rendered from the
store without the ``mosquitto_passwd`` tool and without keeping any password.
Passwords are 32 random URL-safe characters (192 bits), so the broker's cheap
default iteration count does not make them guessable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cloud_sync.errors import RegistryError

HASH_PREFIX = "$7$"  # Mosquitto's id for PBKDF2-HMAC-SHA512
ITERATIONS = 101  # mosquitto_passwd's default; the broker pays it on every CONNECT
SALT_BYTES = 12  # Mosquitto accepts only 12-byte salts
PASSWORD_BYTES = 24


def new_password() -> str:
    """A fresh random password (32 URL-safe characters)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The Mosquitto ``$7$`` hash of ``password`` (fresh random salt unless given)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    if len(salt) != SALT_BYTES:
        raise ValueError(f"Mosquitto needs a {SALT_BYTES}-byte salt, got {len(salt)}")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    b64 = base64.b64encode
    return f"{HASH_PREFIX}{iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches a ``$7$`` hash (constant-time compare)."""
    try:
        iterations, salt, _digest = _parse(hashed)
    except RegistryError:
        return False
    return hmac.compare_digest(mosquitto_hash(password, salt, iterations), hashed)


def _parse(hashed: str) -> tuple[int, bytes, bytes]:
    parts = hashed.split("$")
    if len(parts) != 5 or f"${parts[1]}$" != HASH_PREFIX:
        raise RegistryError("stored credential is not a Mosquitto $7$ hash; re-add the device")
    try:
        return int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        raise RegistryError("stored credential hash is damaged; re-add the device") from None
