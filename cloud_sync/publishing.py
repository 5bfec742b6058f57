"""Publishing a bundle: verify it against the cloud's trusted keys, store it content-addressed,
register its model version. A bundle that fails verification is never stored.

Order matters for "nothing lost": the registry row is written first, the file is
moved into place inside the same transaction, and the transaction commits last. A
refused bundle (bad signature, conflicting version) leaves the store as it was; a
crash after the move leaves at most an unreferenced file at its content address,
which the next publish of that bundle reuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloud_sync.artifacts import ARTIFACT_PATH, ArtifactStore
from cloud_sync.errors import CloudError
from cloud_sync.registry import BundleRecord, register_bundle
from cloud_sync.store import transaction
from cloud_sync.store.queries import bundle_known
from edge_agent.bundle import Manifest, open_bundle, trusted_keys
from edge_agent.errors import SignatureError

ATTEMPTS = 3  # concurrent publishes of one version: the losers retry and find it there


class TrustError(CloudError):
    """The cloud has no usable trusted public key (a server setup problem)."""


@dataclass(frozen=True)
class Published:
    """What a publish did: ``created`` False means the same bundle was already there."""

    created: bool
    sha256: str
    size: int
    name: str
    version: str
    profile: str
    format: str
    precision: str
    key_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the artifact's download path."""
        doc = dict(self.__dict__)
        doc["url"] = ARTIFACT_PATH.format(sha256=self.sha256)
        return doc


def load_trusted(pubkeys: tuple[Path, ...]) -> dict:
    """The cloud's trusted keys by id; TrustError when none are configured or readable."""
    if not pubkeys:
        raise TrustError("the cloud trusts no signing key; add the public key to 'pubkeys' "
                         "in the cloud config (or --pubkey) and restart it")
    try:
        return trusted_keys(pubkeys)
    except SignatureError as exc:
        raise TrustError(f"cannot load the cloud's trusted keys: {exc}") from None


def _register_and_place(engine: Engine, store: ArtifactStore, temp: Path, manifest: Manifest,
                        sha256: str, size: int) -> tuple[bool, BundleRecord]:
    with transaction(engine) as conn:
        known = bundle_known(conn, sha256)
        record = register_bundle(conn, manifest, sha256, size, store.location(sha256))
        store.place(temp, sha256)  # same bytes if already there: replacing heals a damaged copy
    return known, record


def publish_file(engine: Engine, store: ArtifactStore, pubkeys: tuple[Path, ...], temp: Path,
                 sha256: str, size: int) -> Published:
    """Verify the uploaded ``temp`` file (from ``store.incoming()``; its ``sha256``/``size``
    already measured), then register it and put it in the store (a folder or a bucket).
    BundleError/SignatureError (bad bundle) or RegistryError (the version is already
    published with other bytes) leave everything as it was."""
    trusted = load_trusted(pubkeys)
    with open_bundle(temp, trusted, workdir=temp.parent) as opened:
        manifest, kid = opened.manifest, opened.key_id
    for attempt in range(ATTEMPTS):
        try:
            known, record = _register_and_place(engine, store, temp, manifest, sha256, size)
            break
        except sa.exc.IntegrityError:  # a concurrent publish of this version won the race
            if attempt == ATTEMPTS - 1:
                raise
    return Published(created=not known, sha256=sha256, size=size, name=manifest.model.name,
                     version=manifest.model.version, profile=record.profile,
                     format=record.format, precision=record.precision, key_id=kid)
