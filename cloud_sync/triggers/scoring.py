"""Score the last windows of every (fleet, model, version) and store each score.

Each device's telemetry, summed into the policy's aligned windows (the window rows
ingest keeps, see ``triggers.windows``), grouped by fleet and model version and pooled
per fleet: every window is compared with that version's
reference statistics (from any published bundle's manifest: all profiles of a
version share them). Scores are upserted on (scope, model, version, kind, window
start), so recomputing a window rewrites its row instead of adding one. A version
with no published reference gets one ``no_reference`` row per window and kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from cloud_sync.drift import (
    DriftResult,
    WindowCounts,
    drift_scores,
    pool,
    task_kinds,
)
from cloud_sync.drift.tasks import DEFAULT_TASK
from cloud_sync.store.schema import bundles, models
from cloud_sync.store.schema import drift_scores as scores_table
from cloud_sync.triggers.policy import TriggerPolicy
from edge_agent.contracts import ReferenceStats
from edge_agent.contracts.task import Task

NO_REFERENCE = "no_reference"
GroupKey = tuple[str, str, str]  # fleet, model name, model version
Bounds = tuple[float, float]
UPSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
SCORE_KEY = ["scope_key", "model_name", "model_version", "kind", "window_start"]
COLUMNS = ("score", "critical_value", "floor", "threshold", "n_eff", "m_eff", "n_raw", "m_raw",
           "verdict", "inferences")


@dataclass
class GroupScores:
    """One (fleet, model, version)'s scores over the checked windows (oldest first)."""

    key: GroupKey
    bounds: list[Bounds]
    devices: dict[str, list[dict[str, DriftResult] | None]] = field(default_factory=dict)
    fleet: list[dict[str, DriftResult] | None] = field(default_factory=list)
    skipped: str = ""
    task: str = DEFAULT_TASK
    checked: int | None = None
    """Devices with data in the windows, where ``devices`` holds only some (the
    incremental step keeps only devices with drift or scored this step)."""


def last_windows(policy: TriggerPolicy, now: float) -> list[Bounds]:
    """The policy's last ``n`` closed windows before ``now``, oldest first."""
    last_end = math.floor(now / policy.window_s) * policy.window_s
    ends = [last_end - i * policy.window_s for i in range(policy.n)][::-1]
    return [(end - policy.window_s, end) for end in ends]


def _manifests(conn: Connection, name: str, version: str) -> sa.ScalarResult:
    return conn.execute(sa.select(bundles.c.manifest).join(
        models, models.c.id == bundles.c.model_id).where(
        models.c.name == name, models.c.version == version)
        .order_by(bundles.c.created_at)).scalars()


def reference_for(conn: Connection, name: str, version: str) -> ReferenceStats | None:
    """The version's reference statistics from a published bundle, or None."""
    for manifest in _manifests(conn, name, version):
        doc = (manifest or {}).get("reference_stats")
        if doc:
            ref = ReferenceStats.from_dict(doc)
            if ref.input or ref.output or ref.detection or ref.values:
                return ref
    return None


def task_for(conn: Connection, name: str, version: str | None) -> str:
    """The version's task (the manifest's ``task.kind``; a manifest without the block, or
    a version with no published bundle, is a classifier's)."""
    for manifest in _manifests(conn, name, version) if version else ():
        doc = (manifest or {}).get("task")
        if doc:
            return Task.from_dict(doc).kind
    return DEFAULT_TASK


def score_windows(key: GroupKey, device_windows: dict[str, list[WindowCounts | None]],
                  ref: ReferenceStats | None, policy: TriggerPolicy, bounds: list[Bounds],
                  task: str = DEFAULT_TASK) -> GroupScores:
    """Device and fleet scores of one group's device windows (``bounds`` each, None
    where a device has no data), on ``task``'s drift kinds; the fleet's window is the
    pool of its devices'."""
    group = GroupScores(key, bounds, task=task)
    if ref is None:
        group.skipped = f"no published bundle of {key[1]} {key[2]} has reference statistics"
        return group
    config = policy.drift_config()
    device_windows = {d: ws for d, ws in sorted(device_windows.items()) if any(ws)}
    for device, windows in device_windows.items():
        group.devices[device] = [drift_scores(ref, w, config, task) if w else None
                                 for w in windows]
    for i, (start, end) in enumerate(bounds):
        parts = [ws[i] for ws in device_windows.values() if ws[i] is not None]
        fleet = pool(parts, f"fleet:{key[0]}", start, end) if parts else None
        group.fleet.append(drift_scores(ref, fleet, config, task) if fleet else None)
    return group


def _row(key: GroupKey, device: str | None, result: DriftResult, now: float) -> dict[str, Any]:
    doc = result.to_dict()
    return {"scope": "device" if device else "fleet",
            "scope_key": device or f"fleet:{key[0]}", "fleet": key[0], "device_id": device,
            "model_name": key[1], "model_version": key[2], "kind": result.kind,
            "window_start": result.window_start, "window_end": result.window_end,
            **{c: doc[c] for c in COLUMNS},
            "details": {k: v for k, v in doc.items() if k not in COLUMNS}, "computed_at": now}


def result_of_row(row: Any) -> DriftResult:
    """A stored ``drift_scores`` row as the ``DriftResult`` it was written from."""
    return DriftResult.from_dict({
        **(row.details or {}), **{c: getattr(row, c) for c in COLUMNS}, "kind": row.kind,
        "scope": row.scope_key, "model_name": row.model_name,
        "model_version": row.model_version, "window_start": row.window_start,
        "window_end": row.window_end})


def result_rows(key: GroupKey, device: str | None, results: dict[str, DriftResult],
                now: float) -> list[dict[str, Any]]:
    """One window's results of a device (or the fleet, ``device`` None) as score rows."""
    return [_row(key, device, r, now) for r in results.values()]


def _skipped_rows(group: GroupScores, now: float) -> list[dict[str, Any]]:
    fleet, name, version = group.key
    return [{"scope": "fleet", "scope_key": f"fleet:{fleet}", "fleet": fleet, "device_id": None,
             "model_name": name, "model_version": version, "kind": kind, "window_start": s,
             "window_end": e, "inferences": 0, **dict.fromkeys(COLUMNS[:-2]),
             "verdict": NO_REFERENCE, "details": {"reason": group.skipped}, "computed_at": now}
            for s, e in group.bounds for kind in task_kinds(group.task)]


def score_rows(group: GroupScores, now: float) -> list[dict[str, Any]]:
    """Every score of ``group`` as ``drift_scores`` rows."""
    if group.skipped:
        return _skipped_rows(group, now)
    rows = []
    for device, windows in group.devices.items():
        for results in filter(None, windows):
            rows += [_row(group.key, device, r, now) for r in results.values()]
    for results in filter(None, group.fleet):
        rows += [_row(group.key, None, r, now) for r in results.values()]
    return rows


def upsert_scores(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert or rewrite score rows (keyed by scope, model version, kind, window start)."""
    if not rows:
        return 0
    stmt = UPSERTS[conn.dialect.name](scores_table)
    keep = set(SCORE_KEY) | {"id"}
    stmt = stmt.on_conflict_do_update(
        index_elements=SCORE_KEY,
        set_={c.name: stmt.excluded[c.name] for c in scores_table.columns if c.name not in keep})
    conn.execute(stmt, rows)
    return len(rows)
