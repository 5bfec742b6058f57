"""The device windows a drift step scores, read from the window rows ingest keeps
(``store.windows``), one row per device window, never a payload; a window those rows do
not hold completely (from before ingest kept them, or another policy size) is summed
from ``messages`` instead, as every window was before.

The read of ``messages`` is bounded by the coverage: once ingest has kept every fleet's
windows for a lookback, it reads nothing. A fleet with no coverage at all (no telemetry
since the upgrade) has no telemetry newer than the newest coverage start, so the same
bounded read finds its messages.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.drift import WindowCounts, aggregate
from cloud_sync.drift.window import DriftError
from cloud_sync.store import windows as stored
from cloud_sync.store.schema import messages
from cloud_sync.triggers.policy import TriggerPolicy
from edge_agent import protocol
from edge_agent.errors import EdgekitError

GroupKey = tuple[str, str, str]  # fleet, model name, model version
Bounds = tuple[float, float]


@dataclass
class GroupWindows:
    """One (fleet, model, version)'s device windows over ``bounds`` (None: no data)."""

    bounds: list[Bounds]
    devices: dict[str, list[WindowCounts | None]] = field(default_factory=dict)
    error: str = ""
    from_rows: int = 0  # windows read from the window rows
    from_messages: int = 0  # windows summed from messages

    def put(self, device: str, i: int, window: WindowCounts) -> None:
        """Device ``device``'s window ``i``."""
        self.devices.setdefault(device, [None] * len(self.bounds))[i] = window


@dataclass
class FleetBounds:
    """Each fleet's policy and its last windows (cached per step)."""

    policy_for: Callable[[str], TriggerPolicy]
    windows_for: Callable[[TriggerPolicy], list[Bounds]]
    cache: dict[str, tuple[TriggerPolicy, list[Bounds]]] = field(default_factory=dict)

    def __call__(self, fleet: str) -> tuple[TriggerPolicy, list[Bounds]]:
        if fleet not in self.cache:
            policy = self.policy_for(fleet)
            self.cache[fleet] = (policy, self.windows_for(policy))
        return self.cache[fleet]


def _group(groups: dict[GroupKey, GroupWindows], key: GroupKey,
           bounds: list[Bounds]) -> GroupWindows:
    if key not in groups:
        groups[key] = GroupWindows(bounds)
    return groups[key]


def _from_rows(conn: Connection, fleets: FleetBounds, coverage: dict, start: float,
               end: float, groups: dict[GroupKey, GroupWindows], skip: set[str]) -> None:
    for row in stored.read(conn, start, end, skip):  # the incremental step's fleets: not read
        policy, bounds = fleets(row.fleet)
        i = _bound_of(bounds, row.window_start + row.window_s / 2)  # robust to rounding
        if row.window_s != policy.window_s or i is None or not stored.is_complete(
                coverage, row.fleet, row.window_s, row.window_start):
            continue
        group = _group(groups, (row.fleet, row.model_name, row.model_version), bounds)
        try:
            group.put(row.device_id, i, stored.counts_of(row))
            group.from_rows += 1
        except DriftError as exc:
            group.error = group.error or str(exc)


def _raw_end(coverage: dict, fleets: FleetBounds, now: float, skip: set[str]) -> float:
    """Up to where a window may be incomplete in the rows: a kept fleet's windows are
    complete from the first that starts ``FUTURE_MARGIN_S`` after its coverage; a fleet
    with no coverage got no telemetry since the first coverage began (every batch
    records its fleets), so its messages end by then. ``now`` with no coverage at all, or
    a fleet kept at another size than the policy's."""
    if not coverage:
        return now
    ends = [min(coverage.values()) + stored.FUTURE_MARGIN_S]
    for (fleet, size), since in coverage.items():
        if fleet in skip:
            continue
        if fleets(fleet)[0].window_s != size:
            return now
        ends.append(math.ceil((since + stored.FUTURE_MARGIN_S) / size) * size)
    return min(now, max(ends))


def _from_messages(conn: Connection, fleets: FleetBounds, coverage: dict, start: float,
                   end: float, groups: dict[GroupKey, GroupWindows], skip: set[str]) -> None:
    c = messages.c
    rows = conn.execute(sa.select(c.fleet, c.model_name, c.model_version, c.ts, c.payload)
                        .where(c.kind == protocol.TELEMETRY, c.ts >= start, c.ts < end,
                               c.fleet.is_not(None), c.model_name.is_not(None)))
    found: dict[tuple[GroupKey, str, int], list[protocol.Telemetry]] = defaultdict(list)
    for row in rows:
        if row.fleet in skip:
            continue
        policy, bounds = fleets(row.fleet)
        i = _bound_of(bounds, row.ts)  # the row's ts is the message's: parse only if needed
        if i is None or stored.is_complete(coverage, row.fleet, policy.window_s,
                                           bounds[i][0]):
            continue
        try:
            message = protocol.Telemetry.from_dict(row.payload)
        except EdgekitError:  # stored by a newer ingest in a form this one cannot read
            continue
        found[((row.fleet, row.model_name, row.model_version), message.device_id, i)] \
            .append(message)
    for (key, device, i), msgs in sorted(found.items(), key=lambda kv: kv[0]):
        group = _group(groups, key, fleets(key[0])[1])
        try:
            window = aggregate(msgs, device, *group.bounds[i])
        except DriftError as exc:
            group.error = group.error or str(exc)
            continue
        if window is not None:
            group.put(device, i, window)
            group.from_messages += 1


def _bound_of(bounds: list[Bounds], ts: float) -> int | None:
    for i, (s, e) in enumerate(bounds):
        if s <= ts < e:
            return i
    return None


def device_windows(conn: Connection, fleets: FleetBounds, coverage: dict, lookback_s: float,
                   now: float, skip: set[str] = frozenset()) -> dict[GroupKey, GroupWindows]:
    """Every (fleet, model, version) with telemetry in its policy's last windows, and its
    devices' windows: from the window rows where complete, else from ``messages``
    (``skip``: fleets the incremental step scores)."""
    start = now - lookback_s
    groups: dict[GroupKey, GroupWindows] = {}
    _from_rows(conn, fleets, coverage, start, now, groups, skip)
    raw_end = _raw_end(coverage, fleets, now, skip)
    if raw_end > start:
        _from_messages(conn, fleets, coverage, start, raw_end, groups, skip)
    return groups


def summary(groups: dict[GroupKey, GroupWindows]) -> dict[str, Any]:
    """How many windows came from each source (for the step's report)."""
    return {"windows_from_rows": sum(g.from_rows for g in groups.values()),
            "windows_from_messages": sum(g.from_messages for g in groups.values())}
