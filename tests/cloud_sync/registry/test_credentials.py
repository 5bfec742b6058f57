"""Mosquitto $7$ hashes written in Python (a real broker accepts them: test_broker_acl)."""

from __future__ import annotations

import base64
import hashlib

from cloud_sync.registry import mosquitto_hash, new_password, verify_password


def test_hash_has_mosquittos_layout():
    salt = bytes(range(12))
    hashed = mosquitto_hash("secret", salt=salt, iterations=101)
    _, kind, iterations, b64_salt, b64_hash = hashed.split("$")
    assert (kind, iterations) == ("7", "101")
    assert base64.b64decode(b64_salt) == salt
    assert base64.b64decode(b64_hash) == hashlib.pbkdf2_hmac("sha512", b"secret", salt, 101)


def test_verify_accepts_only_the_right_password():
    hashed = mosquitto_hash("secret")
    assert verify_password("secret", hashed)
    assert not verify_password("Secret", hashed)
    assert not verify_password("secret", "$6$abc$def")


def test_passwords_and_salts_are_fresh():
    assert new_password() != new_password() and len(new_password()) >= 32
    assert mosquitto_hash("x") != mosquitto_hash("x")
