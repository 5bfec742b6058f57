"""The drift step on ingest's window rows, incremental: work per step is bounded, never
proportional to the fleet.

For a fleet whose checked windows the rows hold completely (``store.windows``):
- **device windows** are scored once each, after they close, and again only when a late
  message changed them: a row is waiting while its ``version`` (one more per ingest
  update) is past its ``scored_version``. A step scores at most
  ``triggers.device_windows_per_step`` of them, oldest window first, and says when more
  wait (``serve`` then runs the next step within a second);
- **the fleet's windows** are the sum of a few rows (one part per ingest worker,
  ``fleet_windows``), scored every step;
- **the decision** reads the devices' stored ``drift`` verdicts of the checked windows
  (few, through the ``(fleet, window_end)`` index), this step's scores replacing theirs;
  a trigger's evidence reads its affected devices' full scores.

Other fleets (windows from before ingest kept them) are scored as every window was before
(``triggers.windows``, every device every step).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.drift import DriftResult, drift_scores, pool
from cloud_sync.drift.window import DriftError
from cloud_sync.store import windows as stored
from cloud_sync.store.schema import drift_scores as scores_table
from cloud_sync.store.schema import fleet_windows, telemetry_windows
from cloud_sync.triggers.policy import TriggerPolicy
from cloud_sync.triggers.scoring import GroupScores, result_of_row, result_rows

GroupKey = tuple[str, str, str]
Bounds = tuple[float, float]
Results = dict[str, DriftResult]
MAX_EVIDENCE_DEVICES = 100


@dataclass
class Waiting:
    """Device windows scored in this step: their score rows and the versions to mark."""

    results: dict[GroupKey, dict[str, dict[int, Results]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(dict)))
    marks: list[dict[str, int]] = field(default_factory=list)
    errors: dict[GroupKey, str] = field(default_factory=dict)
    more: bool = False


def complete_fleets(coverage: dict, bounds_of: Callable[[str], tuple[TriggerPolicy, list]]
                    ) -> set[str]:
    """Fleets whose checked windows the rows hold completely."""
    out = set()
    for fleet, size in coverage:
        policy, bounds = bounds_of(fleet)
        if policy.window_s == size and all(stored.is_complete(coverage, fleet, size, s)
                                            for s, _ in bounds):
            out.add(fleet)
    return out


def _bound(bounds: list[Bounds], start: float, size: float) -> int | None:
    middle = start + size / 2
    for i, (s, e) in enumerate(bounds):
        if s <= middle < e:
            return i
    return None


def score_waiting(conn: Connection, fleets: set[str], bounds_of, reference: Callable,
                  start: float, now: float, limit: int) -> Waiting:
    """Score up to ``limit`` waiting device windows of ``fleets`` (closed ones, oldest
    first). ``reference(key)`` gives (reference stats or None, task)."""
    c = telemetry_windows.c
    rows = conn.execute(sa.select(
        c.id, c.version, c.fleet, c.device_id, c.model_name, c.model_version, c.window_s,
        c.window_start, c.counts).where(
        c.window_start >= start, c.window_start + c.window_s <= now,
        c.version > c.scored_version, c.fleet.in_(sorted(fleets)))
        .order_by(c.window_start).limit(limit + 1)).all()  # the index's order: no sort
    done = Waiting(more=len(rows) > limit)
    rows = rows[:limit]
    for row in sorted(rows, key=lambda r: (r.device_id, r.model_name, r.model_version,
                                           r.window_s, r.window_start)):
        # marked in the key order ingest updates rows in: the two never deadlock
        done.marks.append({"row_id": row.id, "scored": row.version})
    for row in rows:
        policy, bounds = bounds_of(row.fleet)
        i = _bound(bounds, row.window_start, row.window_s)
        key = (row.fleet, row.model_name, row.model_version)
        ref, task = reference(key)
        if i is None or row.window_s != policy.window_s or ref is None:
            continue  # outside the checked windows, another size, or nothing to compare with
        try:
            results = drift_scores(ref, stored.counts_of(row), policy.drift_config(), task)
        except DriftError as exc:
            done.errors.setdefault(key, str(exc))
            continue
        done.results[key][row.device_id][i] = results
    return done


def mark_scored(conn: Connection, marks: list[dict[str, int]]) -> None:
    """Record the versions scored (a row updated since keeps waiting)."""
    if marks:
        c = telemetry_windows.c
        conn.execute(sa.update(telemetry_windows).where(
            c.id == sa.bindparam("row_id"), c.scored_version < sa.bindparam("scored"))
            .values(scored_version=sa.bindparam("scored")), marks)


def fleet_parts(conn: Connection, fleets: set[str], bounds_of, start: float, now: float
                ) -> dict[GroupKey, dict[int, list[Any]]]:
    """Each group's fleet-window parts, by checked window."""
    f = fleet_windows.c
    out: dict[GroupKey, dict[int, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for row in conn.execute(sa.select(fleet_windows).where(
            f.window_start >= start, f.window_start < now, f.fleet.in_(sorted(fleets)))):
        policy, bounds = bounds_of(row.fleet)
        i = _bound(bounds, row.window_start, row.window_s)
        if i is not None and row.window_s == policy.window_s:
            out[(row.fleet, row.model_name, row.model_version)][i].append(row)
    return out


def _pooled(key: GroupKey, parts: list[Any], bounds: Bounds):
    windows = [stored.counts_of(_as_device(p)) for p in parts]
    return pool(windows, f"fleet:{key[0]}", *bounds)


def _as_device(part: Any) -> Any:
    """A fleet part in the shape ``store.windows.counts_of`` reads."""
    return _Row(part.fleet, f"fleet:{part.fleet}", part.model_name, part.model_version,
                part.window_s, part.window_start, part.counts)


@dataclass(frozen=True)
class _Row:
    fleet: str
    device_id: str
    model_name: str
    model_version: str
    window_s: float
    window_start: float
    counts: dict


def stored_verdicts(conn: Connection, key: GroupKey, bounds: list[Bounds],
                    devices: list[str] | None = None) -> dict[str, dict[int, Results]]:
    """The devices' stored scores of the checked windows: the ``drift`` verdicts only,
    or every score of ``devices``."""
    s = scores_table.c
    query = sa.select(scores_table).where(
        s.fleet == key[0], s.window_end > bounds[0][0], s.window_end <= bounds[-1][1],
        s.model_name == key[1], s.model_version == key[2], s.scope == "device")
    query = query.where(s.device_id.in_(devices)) if devices is not None else \
        query.where(s.verdict == "drift")
    starts = {b[0]: i for i, b in enumerate(bounds)}
    out: dict[str, dict[int, Results]] = defaultdict(dict)
    for row in conn.execute(query):
        i = starts.get(row.window_start)
        if i is not None:
            out[row.device_id].setdefault(i, {})[row.kind] = result_of_row(row)
    return out


def _merge(n: int, stored_results: dict[str, dict[int, Results]],
           fresh: dict[str, dict[int, Results]]) -> dict[str, list[Results | None]]:
    devices: dict[str, list[Results | None]] = {}
    for device in sorted(set(stored_results) | set(fresh)):
        windows = {**stored_results.get(device, {}), **fresh.get(device, {})}
        devices[device] = [windows.get(i) for i in range(n)]
    return devices


def checked_devices(conn: Connection, key: GroupKey, bounds: list[Bounds]) -> int:
    """Devices with a window among the checked ones (for a trigger's evidence)."""
    c = telemetry_windows.c
    return conn.execute(sa.select(sa.func.count(sa.distinct(c.device_id))).where(
        c.window_start >= bounds[0][0], c.window_start < bounds[-1][1], c.fleet == key[0],
        c.model_name == key[1], c.model_version == key[2])).scalar() or 0


def group_scores(conn: Connection, key: GroupKey, policy: TriggerPolicy,
                 bounds: list[Bounds], parts: dict[int, list[Any]], fresh: dict,
                 ref: Any, task: str) -> GroupScores:
    """The group's scores as the decision needs them: the pooled fleet's (scored now),
    devices with a stored drift verdict or scored this step."""
    group = GroupScores(key, bounds, task=task)
    config = policy.drift_config()
    for i, b in enumerate(bounds):
        window = _pooled(key, parts[i], b) if parts.get(i) else None
        group.fleet.append(drift_scores(ref, window, config, task) if window else None)
    group.devices = _merge(len(bounds), stored_verdicts(conn, key, bounds), fresh)
    return group


def with_evidence(conn: Connection, group: GroupScores, devices: tuple[str, ...],
                  fresh: dict) -> None:
    """Full scores of the devices a trigger names, and how many devices were checked."""
    named = list(devices[:MAX_EVIDENCE_DEVICES])
    full = _merge(len(group.bounds), stored_verdicts(conn, group.key, group.bounds, named),
                  {d: fresh[d] for d in named if d in fresh})
    group.devices.update(full)
    group.checked = checked_devices(conn, group.key, group.bounds)


def fresh_rows(key: GroupKey, fresh: dict[str, dict[int, Results]], now: float
               ) -> list[dict[str, Any]]:
    """This step's device scores as rows."""
    rows = []
    for device, windows in sorted(fresh.items()):
        for _i, results in sorted(windows.items()):
            rows += result_rows(key, device, results, now)
    return rows
