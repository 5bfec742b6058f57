"""The model registry: model versions, their signed bundles (one per hardware profile),
and the content-addressed artifacts (by sha256) the cloud serves to devices.

A version is immutable once published: the same bundle again is a no-op, a different
bundle for the same name, version and profile is refused (publish a new version).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.errors import RegistryError
from cloud_sync.store.schema import artifacts, bundles, models
from cloud_sync.store.writes import UPSERTS
from edge_agent.bundle import Manifest


@dataclass(frozen=True)
class BundleRecord:
    """One published bundle: which model version and profile, where its bytes are."""

    sha256: str
    profile: str
    format: str
    precision: str
    size: int
    path: str
    manifest: dict[str, Any]


@dataclass(frozen=True)
class ModelVersion:
    """A model name + version with its bundles."""

    id: int
    name: str
    version: str
    published_at: float
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    bundles: list[BundleRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def _model_id(conn: Connection, manifest: Manifest, doc: dict[str, Any], now: float) -> int:
    name, version = manifest.model.name, manifest.model.version
    query = sa.select(models.c.id).where(models.c.name == name, models.c.version == version)
    found = conn.execute(query).scalar()
    if found is not None:
        return found
    return conn.execute(sa.insert(models).values(
        name=name, version=version, published_at=now, metrics=doc.get("metrics") or {},
        lineage=doc.get("lineage") or {}).returning(models.c.id)).scalar_one()


def _add_artifact(conn: Connection, sha256: str, size: int, path: str, now: float) -> None:
    stmt = UPSERTS[conn.dialect.name](artifacts).values(
        sha256=sha256, size=size, path=str(path), created_at=now)
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["sha256"]))


def register_bundle(conn: Connection, manifest: Manifest, sha256: str, size: int,
                    path: str | Path, now: float | None = None) -> BundleRecord:
    """Record a verified bundle file (sha256/size of the .ekb, where it is stored: a file
    path or ``s3://bucket/key``) under its model version and profile; idempotent for the
    same file."""
    now, doc = time.time() if now is None else now, manifest.to_dict()
    model_id = _model_id(conn, manifest, doc, now)
    existing = conn.execute(sa.select(bundles.c.sha256).where(
        bundles.c.model_id == model_id, bundles.c.profile == manifest.profile)).scalar()
    if existing is not None and existing != sha256:
        raise RegistryError(
            f"{manifest.model.name} {manifest.model.version} for {manifest.profile} is already "
            "published with a different bundle; publish it as a new version")
    _add_artifact(conn, sha256, size, str(path), now)
    if existing is None:
        conn.execute(sa.insert(bundles).values(
            sha256=sha256, model_id=model_id, profile=manifest.profile,
            format=manifest.target.format, precision=manifest.target.precision, size=size,
            manifest=doc, created_at=now))
    return BundleRecord(sha256, manifest.profile, manifest.target.format,
                        manifest.target.precision, size, str(path), doc)


def _bundles_of(conn: Connection, model_ids: list[int]) -> dict[int, list[BundleRecord]]:
    query = (sa.select(bundles, artifacts.c.path)
             .join(artifacts, artifacts.c.sha256 == bundles.c.sha256)
             .where(bundles.c.model_id.in_(model_ids)).order_by(bundles.c.profile))
    found: dict[int, list[BundleRecord]] = {i: [] for i in model_ids}
    for row in conn.execute(query):
        found[row.model_id].append(BundleRecord(row.sha256, row.profile, row.format,
                                                row.precision, row.size, row.path, row.manifest))
    return found


def _versions(conn: Connection, query: sa.Select) -> list[ModelVersion]:
    rows = conn.execute(query).all()
    per_model = _bundles_of(conn, [r.id for r in rows]) if rows else {}
    return [ModelVersion(r.id, r.name, r.version, r.published_at, r.metrics, r.lineage,
                         per_model[r.id]) for r in rows]


def list_models(conn: Connection, name: str | None = None) -> list[ModelVersion]:
    """Every model version (of ``name`` if given) with its bundles, newest first."""
    query = sa.select(models).order_by(models.c.published_at.desc(), models.c.id.desc())
    if name is not None:
        query = query.where(models.c.name == name)
    return _versions(conn, query)


def get_model(conn: Connection, name: str, version: str) -> ModelVersion | None:
    """One model version with its bundles, or None."""
    query = sa.select(models).where(models.c.name == name, models.c.version == version)
    return next(iter(_versions(conn, query)), None)
