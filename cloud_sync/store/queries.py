"""Read queries the HTTP API (and later the dashboard) answer with; SQLAlchemy Core only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.registry.devices import Device
from cloud_sync.store.schema import artifacts, bundles, devices, messages, models, quarantine

TELEMETRY_COLUMNS = ("seq", "ts", "received_at", "model_name", "model_version", "window_s",
                     "inferences", "errors", "latency_p50", "latency_p95", "latency_p99",
                     "confidence_mean", "frames", "empty_frames", "detections", "score_mean")


@dataclass(frozen=True)
class Page:
    """One page of a listing and the total count that matched."""

    items: list[Any]
    total: int


def device_page(conn: Connection, fleet: str | None, state: str | None, limit: int,
                offset: int) -> Page:
    """Devices (of ``fleet``, in ``state`` if given) by fleet then id, one page."""
    where = [c for c in (devices.c.fleet == fleet if fleet else None,
                         devices.c.state == state if state else None) if c is not None]
    total = conn.execute(sa.select(sa.func.count()).select_from(devices).where(*where)).scalar()
    rows = conn.execute(sa.select(devices).where(*where).order_by(devices.c.fleet, devices.c.id)
                        .limit(limit).offset(offset))
    return Page([Device.from_row(r) for r in rows], int(total or 0))


def telemetry_series(conn: Connection, device_id: str, start: float | None, end: float | None,
                     limit: int) -> tuple[list[dict[str, Any]], bool]:
    """A device's telemetry figures with ``start <= ts < end``, oldest first: the newest
    ``limit`` points, and whether older ones were left out."""
    cols = [messages.c[name] for name in TELEMETRY_COLUMNS]
    query = sa.select(*cols).where(messages.c.device_id == device_id,
                                   messages.c.kind == "telemetry")
    if start is not None:
        query = query.where(messages.c.ts >= start)
    if end is not None:
        query = query.where(messages.c.ts < end)
    rows = conn.execute(query.order_by(messages.c.ts.desc(), messages.c.seq.desc())
                        .limit(limit + 1)).all()
    points = [dict(r._mapping) for r in rows[:limit]]
    return points[::-1], len(rows) > limit


def model_summaries(conn: Connection) -> list[dict[str, Any]]:
    """One entry per model name: how many versions, the latest one, its profiles."""
    ranked = sa.select(models.c.id, models.c.name, models.c.version, models.c.published_at,
                       sa.func.row_number().over(
                           partition_by=models.c.name,
                           order_by=(models.c.published_at.desc(), models.c.id.desc()))
                       .label("rank"),
                       sa.func.count().over(partition_by=models.c.name).label("versions")
                       ).subquery()
    latest = conn.execute(sa.select(ranked).where(ranked.c.rank == 1)
                          .order_by(ranked.c.name)).all()
    profiles = _profiles_of(conn, [r.id for r in latest])
    return [{"name": r.name, "versions": r.versions, "latest_version": r.version,
             "latest_published_at": r.published_at, "profiles": profiles.get(r.id, [])}
            for r in latest]


def _profiles_of(conn: Connection, model_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    if not model_ids:
        return found
    query = (sa.select(bundles.c.model_id, bundles.c.profile)
             .where(bundles.c.model_id.in_(model_ids)).order_by(bundles.c.profile))
    for model_id, profile in conn.execute(query):
        found.setdefault(model_id, []).append(profile)
    return found


def artifact_file(conn: Connection, sha256: str) -> tuple[str, int] | None:
    """(path, size) of a stored artifact, or None."""
    row = conn.execute(sa.select(artifacts.c.path, artifacts.c.size)
                       .where(artifacts.c.sha256 == sha256)).first()
    return (row.path, int(row.size)) if row else None


def bundle_known(conn: Connection, sha256: str) -> bool:
    """True when a bundle with this sha256 is registered."""
    query = sa.select(bundles.c.sha256).where(bundles.c.sha256 == sha256)
    return conn.execute(query).first() is not None


def quarantine_by_reason(conn: Connection) -> dict[str, int]:
    """How many quarantined messages are kept, per reason."""
    query = sa.select(quarantine.c.reason, sa.func.count()).group_by(quarantine.c.reason)
    return {reason: int(n) for reason, n in conn.execute(query)}
