"""The dashboard's reads (SQLAlchemy Core): counts and pages aggregated in SQL, so a page
costs the same at 10 devices and at 10,000. Nothing here loads a whole table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.store.queries import telemetry_series
from cloud_sync.store.schema import (
    devices,
    drift_scores,
    rollout_devices,
    rollout_events,
    rollouts,
    triggers,
)

DRIFT_POINTS = 2000  # newest drift scores drawn on a device page
TELEMETRY_POINTS = 2000  # newest telemetry points drawn on a device page
ROLLOUT_DEVICE_ROWS = 200  # devices listed on a rollout page (failures first)


@dataclass(frozen=True)
class DeviceFilter:
    """What the devices table shows: filters, sort column and direction, one page."""

    fleet: str | None = None
    state: str | None = None
    version: str | None = None
    search: str | None = None
    sort: str = "id"
    descending: bool = False
    page: int = 1
    per_page: int = 50

    @property
    def offset(self) -> int:
        """Rows skipped before this page."""
        return (self.page - 1) * self.per_page

    def query(self, **changes: Any) -> str:
        """This filter with ``changes`` as a query string (defaults left out)."""
        f = dataclasses.replace(self, **changes)
        args = {"fleet": f.fleet, "state": f.state, "version": f.version, "q": f.search,
                "sort": None if f.sort == "id" else f.sort,
                "dir": "desc" if f.descending else None,
                "page": f.page if f.page > 1 else None,
                "per_page": f.per_page if f.per_page != 50 else None}
        return urlencode({k: v for k, v in args.items() if v is not None})

    def sorted_by(self, column: str) -> str:
        """The query string that sorts by ``column`` (flipping the direction if it is the
        current one), back on page 1."""
        flip = column == self.sort and not self.descending
        return self.query(sort=column, descending=flip, page=1)


@dataclass(frozen=True)
class DevicePage:
    """One page of device rows and how many devices matched in all."""

    rows: list[dict[str, Any]]
    total: int

    def pages(self, per_page: int) -> int:
        """How many pages the matches fill (at least 1)."""
        return max(1, -(-self.total // per_page))


def fleet_overview(conn: Connection) -> dict[str, Any]:
    """Devices per state, per fleet and per model version in the field (grouped in SQL)."""
    d = devices.c
    states = dict(conn.execute(sa.select(d.state, sa.func.count()).group_by(d.state)).all())
    fleets = conn.execute(sa.select(d.fleet, sa.func.count()).group_by(d.fleet)
                          .order_by(d.fleet)).all()
    versions = conn.execute(
        sa.select(d.model_name, d.model_version, sa.func.count().label("n"))
        .group_by(d.model_name, d.model_version)
        .order_by(sa.desc("n"), d.model_name, d.model_version)).all()
    return {"total": sum(states.values()), "states": {k: int(v) for k, v in states.items()},
            "fleets": [(f, int(n)) for f, n in fleets],
            "versions": [{"model": r.model_name, "version": r.model_version, "devices": int(r.n)}
                         for r in versions]}


def activity_counts(conn: Connection, since: float) -> dict[str, int]:
    """Triggers fired since ``since`` and rollouts per state."""
    fired = conn.execute(sa.select(sa.func.count()).select_from(triggers)
                         .where(triggers.c.fired_at >= since)).scalar()
    per_state = conn.execute(sa.select(rollouts.c.state, sa.func.count())
                             .group_by(rollouts.c.state)).all()
    return {"triggers_recent": int(fired or 0), **{f"rollouts_{s}": int(n) for s, n in per_state}}


def _latest_drift(device_ids: list[str] | None = None) -> sa.Subquery:
    """Per device (of ``device_ids``, else all): its newest device-scope drift window, the
    worst score / threshold in it over the kinds, and whether any kind drifted there.
    ``scope_key`` is the device id for device scores and leads the table's unique index."""
    s = drift_scores.c
    scoped = [s.scope == "device"]
    if device_ids is not None:
        scoped.append(s.scope_key.in_(device_ids))
    newest = (sa.select(s.scope_key, sa.func.max(s.window_end).label("window_end"))
              .where(*scoped).group_by(s.scope_key).subquery())
    ratio = sa.case((s.threshold > 0, s.score / s.threshold), else_=None)
    return (sa.select(s.scope_key.label("device_id"),
                      sa.func.max(ratio).label("drift_ratio"),
                      sa.func.max(sa.case((s.verdict == "drift", 1), else_=0)).label("drifting"))
            .join(newest, sa.and_(s.scope_key == newest.c.scope_key,
                                  s.window_end == newest.c.window_end))
            .where(*scoped).group_by(s.scope_key).subquery())


def _device_where(f: DeviceFilter) -> list[Any]:
    d = devices.c
    where = []
    if f.fleet:
        where.append(d.fleet == f.fleet)
    if f.state:
        where.append(d.state == f.state)
    if f.version:
        where.append(d.model_version == f.version)
    if f.search:
        escaped = f.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(d.id.ilike(f"%{escaped}%", escape="\\"))
    return where


DEVICE_COLUMNS = ("id", "fleet", "state", "profile", "model_name", "model_version",
                  "agent_version", "last_seen")
SORT_COLUMNS = {"id": "id", "fleet": "fleet", "state": "state", "version": "model_version",
                "last_seen": "last_seen"}


def device_table(conn: Connection, f: DeviceFilter) -> DevicePage:
    """One page of devices (filtered, sorted and cut in SQL) with their latest drift ratio.
    Sorting by drift ranks every matching device's newest window in SQL; any other sort
    takes the page from ``devices`` first and looks up drift for those rows only."""
    where = _device_where(f)
    total = conn.execute(sa.select(sa.func.count()).select_from(devices).where(*where)).scalar()
    rows = _drift_sorted(conn, f, where) if f.sort == "drift" else _column_sorted(conn, f, where)
    return DevicePage(rows, int(total or 0))


def _column_sorted(conn: Connection, f: DeviceFilter, where: list[Any]) -> list[dict[str, Any]]:
    d = devices.c
    column = d[SORT_COLUMNS[f.sort]]
    order = (column.desc() if f.descending else column.asc()).nulls_last()
    rows = [dict(r._mapping) for r in conn.execute(
        sa.select(*(d[c] for c in DEVICE_COLUMNS)).where(*where).order_by(order, d.id)
        .limit(f.per_page).offset(f.offset))]
    drift = _latest_drift([r["id"] for r in rows])
    found = {r.device_id: r for r in conn.execute(sa.select(drift))} if rows else {}
    for r in rows:
        hit = found.get(r["id"])
        r["drift_ratio"], r["drifting"] = (hit.drift_ratio, hit.drifting) if hit else (None, None)
    return rows


def _drift_sorted(conn: Connection, f: DeviceFilter, where: list[Any]) -> list[dict[str, Any]]:
    d = devices.c
    drift = _latest_drift()
    ratio = drift.c.drift_ratio
    query = (sa.select(*(d[c] for c in DEVICE_COLUMNS), ratio, drift.c.drifting)
             .select_from(devices.outerjoin(drift, drift.c.device_id == d.id)).where(*where)
             .order_by((ratio.desc() if f.descending else ratio.asc()).nulls_last(), d.id)
             .limit(f.per_page).offset(f.offset))
    return [dict(r._mapping) for r in conn.execute(query)]


SORTS = (*SORT_COLUMNS, "drift")


def filter_choices(conn: Connection) -> dict[str, list[str]]:
    """Distinct fleets, states and versions for the filter menus (grouped, not scanned
    into Python)."""
    d = devices.c
    return {name: [v for (v,) in conn.execute(sa.select(col).where(col.is_not(None))
                                              .group_by(col).order_by(col).limit(500))]
            for name, col in (("fleet", d.fleet), ("state", d.state),
                              ("version", d.model_version))}


def device_row(conn: Connection, device_id: str) -> dict[str, Any] | None:
    """One device's registry row (without its credential hash), or None."""
    row = conn.execute(sa.select(devices).where(devices.c.id == device_id)).first()
    if row is None:
        return None
    doc = dict(row._mapping)
    doc.pop("credential_hash", None)
    return doc


def device_telemetry(conn: Connection, device_id: str) -> dict[str, list[Any]]:
    """The newest telemetry points of a device as chart columns (oldest first)."""
    points, _ = telemetry_series(conn, device_id, None, None, TELEMETRY_POINTS)
    names = ("ts", "latency_p50", "latency_p95", "inferences", "errors", "confidence_mean",
             "frames", "score_mean")
    out = {n: [p[n] for p in points] for n in names}
    out["per_frame"] = [_share(p["detections"], p["frames"]) for p in points]
    out["empty_rate"] = [_share(p["empty_frames"], p["frames"]) for p in points]
    return out


def _share(part: int | None, whole: int | None) -> float | None:
    return part / whole if part is not None and whole else None


def device_drift(conn: Connection, device_id: str) -> dict[str, dict[str, list[Any]]]:
    """A device's drift scores per kind as chart columns: window end, score, threshold."""
    s = drift_scores.c
    rows = conn.execute(
        sa.select(s.kind, s.window_end, s.score, s.threshold, s.verdict)
        .where(s.scope_key == device_id, s.scope == "device")  # scope_key: indexed
        .order_by(s.window_end.desc()).limit(DRIFT_POINTS)).all()
    out: dict[str, dict[str, list[Any]]] = {}
    for r in reversed(rows):
        series = out.setdefault(r.kind, {"ts": [], "score": [], "threshold": [], "verdict": []})
        series["ts"].append(r.window_end)
        series["score"].append(r.score)
        series["threshold"].append(r.threshold)
        series["verdict"].append(r.verdict)
    return out


def latest_channels(conn: Connection, device_id: str) -> list[dict[str, Any]]:
    """The input channels furthest over their thresholds in the device's newest input
    window (as the drift job stored them)."""
    s = drift_scores.c
    row = conn.execute(sa.select(s.details, s.window_end).where(
        s.scope_key == device_id, s.scope == "device", s.kind == "input")
        .order_by(s.window_end.desc()).limit(1)).first()
    if row is None:
        return []
    return [{**c, "window_end": row.window_end} for c in (row.details or {}).get("channels", [])]


def trigger_rows(conn: Connection, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Triggers newest first, one page, and how many there are."""
    t = triggers.c
    total = conn.execute(sa.select(sa.func.count()).select_from(triggers)).scalar()
    rows = conn.execute(sa.select(t.id, t.fleet, t.model_name, t.model_version, t.fired_at,
                                  t.window_end, t.samples_count, t.evidence)
                        .order_by(t.fired_at.desc(), t.id.desc()).limit(limit).offset(offset))
    out = []
    for r in rows:
        ev = r.evidence or {}
        out.append({"id": r.id, "fleet": r.fleet, "model": r.model_name,
                    "version": r.model_version, "fired_at": r.fired_at,
                    "samples": r.samples_count, "reason": ev.get("reason", ""),
                    "devices_affected": len(ev.get("devices_affected", []))})
    return out, int(total or 0)


def rollout_rows(conn: Connection, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Rollouts newest first with device counts per state (grouped in SQL), one page."""
    r = rollouts.c
    total = conn.execute(sa.select(sa.func.count()).select_from(rollouts)).scalar()
    rows = conn.execute(sa.select(r.id, r.model_name, r.model_version, r.fleet, r.state, r.wave,
                                  r.created_at, r.updated_at, r.verdict)
                        .order_by(r.id.desc()).limit(limit).offset(offset)).all()
    counts = _state_counts(conn, [row.id for row in rows])
    return [{**dict(row._mapping), "devices": counts.get(row.id, {})} for row in rows], \
        int(total or 0)


def _state_counts(conn: Connection, ids: list[int]) -> dict[int, dict[str, int]]:
    rd = rollout_devices.c
    out: dict[int, dict[str, int]] = {}
    if not ids:
        return out
    for rid, state, n in conn.execute(sa.select(rd.rollout_id, rd.state, sa.func.count())
                                      .where(rd.rollout_id.in_(ids))
                                      .group_by(rd.rollout_id, rd.state)):
        out.setdefault(rid, {})[state] = int(n)
    return out


def rollout_detail(conn: Connection, rid: int) -> dict[str, Any] | None:
    """A rollout: its row, devices per wave and state, the timeline, and a page of devices
    (failures and rollbacks first)."""
    row = conn.execute(sa.select(rollouts).where(rollouts.c.id == rid)).first()
    if row is None:
        return None
    rd = rollout_devices.c
    waves: dict[int, dict[str, int]] = {}
    for wave, state, n in conn.execute(sa.select(rd.wave, rd.state, sa.func.count())
                                       .where(rd.rollout_id == rid)
                                       .group_by(rd.wave, rd.state).order_by(rd.wave)):
        waves.setdefault(int(wave), {})[state] = int(n)
    timeline = [dict(e._mapping) for e in conn.execute(
        sa.select(rollout_events).where(rollout_events.c.rollout_id == rid)
        .order_by(rollout_events.c.id))]
    first = sa.case((rd.state.in_(("failed", "rolled_back", "rollback_confirmed")), 0), else_=1)
    devs = [dict(d._mapping) for d in conn.execute(
        sa.select(rd.device_id, rd.wave, rd.state, rd.old_version, rd.sent_at, rd.updated_at)
        .where(rd.rollout_id == rid).order_by(first, rd.wave, rd.device_id)
        .limit(ROLLOUT_DEVICE_ROWS))]
    return {**dict(row._mapping), "waves": waves, "timeline": timeline, "devices": devs,
            "device_total": sum(sum(w.values()) for w in waves.values())}
