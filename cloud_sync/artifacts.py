"""Artifacts on disk, content-addressed by sha256, and the signed URLs devices fetch them with.
(The S3 backend, ``artifacts.backend: s3``, is ``cloud_sync.artifacts_s3``; ``open_store``
picks the configured one.)

Layout: ``<artifacts_dir>/<sha256[:2]>/<sha256>.ekb``; a file is written under a temporary
name in ``<artifacts_dir>/.incoming`` (same file system) and renamed into place, so a
reader never sees half a file. Two writers of the same content race harmlessly: the
bytes are the same.

Signed URLs: ``<base>/api/v1/artifacts/<sha256>?expires=<unix s>&sig=<hex>``, where
``sig`` is HMAC-SHA256 over ``"<path>\\n<expires>"`` (the path without ``base``, so a
reverse-proxy prefix does not matter) with the server's secret. The secret is
``$EDGEKIT_ARTIFACT_URL_SECRET`` (every API host of a deployment must share it) or
``<data_dir>/artifact-url.key`` (mode 0600, made on first use).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from cloud_sync.errors import CloudError
from edge_agent.bundle.archive import fsync_dir

ARTIFACT_PATH = "/api/v1/artifacts/{sha256}"
SECRET_ENV = "EDGEKIT_ARTIFACT_URL_SECRET"
SECRET_FILE = "artifact-url.key"
SUFFIX = ".ekb"
INCOMING = ".incoming"


class ArtifactError(CloudError):
    """An artifact file cannot be stored or found, or the URL secret is unusable."""


def is_sha256(value: str) -> bool:
    """True for 64 lowercase hex digits."""
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


@dataclass(frozen=True)
class ArtifactStore:
    """The artifacts folder: where each sha256 lives, temp files, atomic placement."""

    root: Path

    def path_for(self, sha256: str) -> Path:
        """Where the artifact with this sha256 is (or would be) kept."""
        if not is_sha256(sha256):
            raise ArtifactError(f"{sha256!r} is not a sha256 (64 lowercase hex digits)")
        return self.root / sha256[:2] / f"{sha256}{SUFFIX}"

    def incoming(self) -> Path:
        """A fresh empty temp file next to the store (same file system), for an upload."""
        folder = self.root / INCOMING
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=SUFFIX, dir=folder)
        os.close(fd)
        return Path(name)

    def location(self, sha256: str) -> str:
        """What the registry records for this artifact: its file's path."""
        return str(self.path_for(sha256))

    def place(self, temp: Path, sha256: str) -> str:
        """Move a verified temp file to its content address (atomic rename); its location."""
        target = self.path_for(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(temp, 0o644)
        os.replace(temp, target)
        fsync_dir(target.parent)
        return str(target)

    def presign(self, sha256: str, ttl_s: float | None = None) -> str | None:
        """None: devices fetch a folder's artifacts from the cloud's API (signed URLs)."""
        return None

    def check(self) -> None:
        """Nothing to check up front: the folder is made on the first upload."""


def load_url_secret(data_dir: Path) -> bytes:
    """The signing secret: ``$EDGEKIT_ARTIFACT_URL_SECRET``, else the key file in
    ``data_dir`` (made with 32 random bytes, mode 0600, the first time)."""
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV].encode("utf-8")
    path = Path(data_dir) / SECRET_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    except OSError as exc:
        raise ArtifactError(f"cannot create the URL-signing key {path}: {exc.strerror}; "
                            f"pick a writable data folder or set {SECRET_ENV}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ArtifactError(f"cannot read the URL-signing key {path}: {exc.strerror}") from None
    if len(secret) < 32:
        raise ArtifactError(f"URL-signing key {path} is too short; delete it to make a new one")
    return secret


def _signature(secret: bytes, sha256: str, expires: int) -> str:
    message = f"{ARTIFACT_PATH.format(sha256=sha256)}\n{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign_artifact_url(base: str, sha256: str, ttl_s: float, secret: bytes,
                      now: float | None = None) -> str:
    """A URL for ``base`` (e.g. ``http://cloud:8000``) that lets anyone holding it fetch
    this artifact until ``now + ttl_s``; what update commands carry."""
    if not is_sha256(sha256):
        raise ArtifactError(f"{sha256!r} is not a sha256 (64 lowercase hex digits)")
    if ttl_s <= 0:
        raise ArtifactError(f"signed URL lifetime must be > 0 seconds, got {ttl_s}")
    expires = int((time.time() if now is None else now) + ttl_s)
    query = urlencode({"expires": expires, "sig": _signature(secret, sha256, expires)})
    return f"{base.rstrip('/')}{ARTIFACT_PATH.format(sha256=sha256)}?{query}"


def check_signature(secret: bytes, sha256: str, expires: str, sig: str,
                    now: float | None = None) -> str | None:
    """None when ``expires``/``sig`` grant ``sha256`` now; else why not (one line)."""
    try:
        deadline = int(expires)
    except ValueError:
        return "the signed URL's 'expires' is not a Unix time"
    if not hmac.compare_digest(_signature(secret, sha256, deadline), sig):
        return "the URL's signature is not valid for this artifact"
    if deadline <= (time.time() if now is None else now):
        return "the signed URL has expired; ask for a fresh one"
    return None


def _local(cfg) -> ArtifactStore:
    return ArtifactStore(cfg.artifacts_dir)


def _s3(cfg):
    from cloud_sync.artifacts_s3 import S3ArtifactStore

    return S3ArtifactStore(cfg.artifacts, spool=cfg.artifacts_dir / INCOMING)


STORES = {"local": _local, "s3": _s3}


def open_store(cfg):
    """The artifact store the cloud config names (``artifacts.backend``)."""
    return STORES[cfg.artifacts.backend](cfg)
