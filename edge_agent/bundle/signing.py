"""Ed25519 keys and manifest signatures.

The signature covers the exact bytes of ``manifest.json``, and the manifest holds
the sha256 of every payload file, so one signature protects the whole bundle.
``manifest.sig`` is JSON: ``{"alg": "Ed25519", "key_id": ..., "signature": base64}``.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_agent.errors import EdgekitError, SignatureError
from edge_agent.hashing import Sha256

PRIVATE_NAME = "edgekit_ed25519.pem"
PUBLIC_NAME = "edgekit_ed25519.pub.pem"
ALG = "Ed25519"


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: the first 16 hex digits of its sha256."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Sha256(raw).hexdigest()[:16]


def generate_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write a new private key (mode 0600) and its public key into ``out_dir``; never overwrite."""
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise EdgekitError(f"{path} already exists; choose another --out folder or move it")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(private_path, private_pem, 0o600)
    _write_new(public_path, public_pem, 0o644)
    return private_path, public_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(str(path), mode)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM Ed25519 private key, with a clear error for anything else."""
    data = _read_key_file(path, "private")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} is not an Ed25519 key; make one with 'edgekit keys generate'")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a PEM Ed25519 public key, with a clear error for anything else."""
    data = _read_key_file(path, "public")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path} is not an Ed25519 key; make one with 'edgekit keys generate'")
    return key


def _read_key_file(path: Path, kind: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SignatureError(f"cannot read {kind} key {path}: {exc.strerror}") from exc


def trusted_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """The public keys a reader trusts, by key id."""
    keys = [load_public_key(Path(p)) for p in paths]
    return {key_id(k): k for k in keys}


def sign_manifest(manifest_bytes: bytes, key: Ed25519PrivateKey) -> bytes:
    """The ``manifest.sig`` document for these exact manifest bytes."""
    doc = {"alg": ALG, "key_id": key_id(key.public_key()),
           "signature": base64.b64encode(key.sign(manifest_bytes)).decode("ascii")}
    return json.dumps(doc, sort_keys=True).encode("utf-8")


def verify_manifest(manifest_bytes: bytes, sig_bytes: bytes,
                    trusted: dict[str, Ed25519PublicKey]) -> str:
    """Check ``manifest.sig`` against trusted keys; return the signer's key id."""
    if not trusted:
        raise SignatureError("no trusted public key given; pass --pubkey with the signer's key")
    try:
        doc = json.loads(sig_bytes.decode("utf-8"))
        kid, alg = str(doc["key_id"]), doc["alg"]
        signature = base64.b64decode(doc["signature"], validate=True)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise SignatureError("manifest.sig is malformed; re-sign the bundle") from exc
    if alg != ALG:
        raise SignatureError(f"signature algorithm {alg!r} is not supported; only {ALG}")
    if kid not in trusted:
        raise SignatureError(
            f"bundle is signed by key {kid}, which is not trusted here; "
            f"trusted: {', '.join(sorted(trusted))}"
        )
    try:
        trusted[kid].verify(signature, manifest_bytes)
    except InvalidSignature as exc:
        raise SignatureError("manifest signature does not verify: the bundle was tampered with") \
            from exc
    return kid
