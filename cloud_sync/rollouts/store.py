"""Rollout rows: creating a rollout (target, plan, devices), the timeline, reading one or
all for the API, and abort. The controller's moves are in ``machine``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.errors import CloudError
from cloud_sync.registry.models import get_model
from cloud_sync.rollouts.commands import cmd_id
from cloud_sync.rollouts.policy import RolloutPolicy
from cloud_sync.rollouts.states import TERMINAL as TERMINAL  # re-exported (machine)
from cloud_sync.store.chunks import rows_in_chunks
from cloud_sync.store.schema import devices, rollout_devices, rollout_events, rollouts

HALTABLE = ("pending", "canary", "wave", "baking")


class RolloutError(CloudError):
    """A rollout cannot be started or changed as asked."""


class RolloutConflict(RolloutError):
    """The devices asked for are held by an open rollout (refused, never queued)."""


def event(conn: Connection, rollout_id: int, state: str, message: str, now: float,
          figures: dict[str, Any] | None = None) -> None:
    """Append one line to the rollout's timeline."""
    conn.execute(sa.insert(rollout_events).values(rollout_id=rollout_id, at=now, state=state,
                                                  message=message[:512], figures=figures))


def _targets(conn: Connection, fleet: str | None, device_ids: list[str] | None) -> list[Any]:
    d = devices.c
    if device_ids:
        rows = list(rows_in_chunks(conn, sorted(set(device_ids)),
                                   lambda ids: sa.select(devices).where(d.id.in_(ids))))
        missing = sorted(set(device_ids) - {r.id for r in rows})
        if missing:
            raise RolloutError(f"unknown device(s): {', '.join(missing)}")
    elif fleet:
        rows = list(conn.execute(sa.select(devices).where(d.fleet == fleet)))
    else:
        raise RolloutError("a rollout needs a fleet or a list of devices")
    if not rows:
        raise RolloutError(f"fleet {fleet!r} has no registered devices")
    return sorted(rows, key=lambda r: r.id)


def _check_bundles(conn: Connection, model: str, version: str, rows: list[Any]) -> None:
    found = get_model(conn, model, version)
    if found is None:
        raise RolloutError(f"model {model} version {version} is not published; "
                           "publish it with 'edgekit cloud publish'")
    profiles = {b.profile for b in found.bundles}
    lacking = sorted({r.profile or "unknown" for r in rows} - profiles)
    if lacking:
        raise RolloutError(f"{model} {version} has no bundle for profile(s) "
                           f"{', '.join(lacking)}; published for {', '.join(sorted(profiles))}")


def plan_text(plan: list[int]) -> str:
    """A rollout's cumulative device counts per step, as a person reads them."""
    later = ", ".join(str(n) for n in plan[1:])
    return f"canary {plan[0]}" + (f"; then {later} devices in all" if later else "")


def _holders(conn: Connection, ids: set[str]) -> dict[int, list[str]]:
    """The open rollouts holding any of ``ids``: rollout id -> the held ids among them.

    Reads every held row (one per device of the open rollouts, at most the fleet; served
    by the partial index) rather than sending the targets as one huge ``IN`` list."""
    rd = rollout_devices.c
    held: dict[int, list[str]] = {}
    for device_id, rid in conn.execute(sa.select(rd.device_id, rd.rollout_id).where(
            rd.released_at.is_(None))):
        if device_id in ids:
            held.setdefault(rid, []).append(device_id)
    return held


def _refuse_held(conn: Connection, ids: set[str]) -> None:
    """RolloutConflict naming each open rollout that holds some of ``ids``."""
    held = _holders(conn, ids)
    if not held:
        return
    found = {r.id: r for r in conn.execute(sa.select(rollouts).where(
        rollouts.c.id.in_(sorted(held))))}
    parts = []
    for rid, devs in sorted(held.items()):
        r, devs = found.get(rid), sorted(devs)
        what = f"{r.model_name} {r.model_version}, {r.state}" if r is not None else "open"
        more = f" and {len(devs) - 5} more" if len(devs) > 5 else ""
        parts.append(f"rollout {rid} ({what}) holds {', '.join(devs[:5])}{more}")
    first = min(held)
    raise RolloutConflict(f"{'; '.join(parts)}: a device is in one open rollout at a time; "
                          f"wait until it ends, or abort it ('edgekit rollout abort {first}') "
                          "and start again once it has rolled back")


def _insert_devices(conn: Connection, values: list[dict[str, Any]]) -> None:
    """Insert the rollout's devices; the unique partial index refuses any device another
    open rollout holds (one created concurrently included): RolloutConflict naming it.
    Rows go in device-id order, so two racing inserts wait on each other, never deadlock."""
    try:
        with conn.begin_nested():  # on a conflict the transaction stays usable to name it
            conn.execute(sa.insert(rollout_devices), values)
    except sa.exc.IntegrityError:
        _refuse_held(conn, {v["device_id"] for v in values})
        raise


def create_rollout(conn: Connection, model: str, version: str, fleet: str | None,
                   device_ids: list[str] | None, policy: RolloutPolicy, now: float) -> int:
    """Insert a ``pending`` rollout with its devices assigned to waves; returns its id.

    A device is in at most one open rollout. A second rollout over devices that an open
    one holds is **refused** (RolloutConflict names the open rollout), not queued: the
    second was chosen against the fleet as it was before the first, so starting it later
    on its own would act on stale judgement (a version the first may have replaced or
    rolled back); the operator aborts the first or starts again once it ends. The guard is
    the database's: ``rollout_devices.released_at`` is NULL while the rollout is open
    (set when it reaches ``done`` or ``rolled_back``), and a unique partial index on
    ``device_id WHERE released_at IS NULL`` admits one open row per device. Unlike a
    check-then-insert it holds under concurrency on both databases (SQLite serialises
    writers; on PostgreSQL the second insert waits for the first transaction and then
    fails), needs no lock row to clean up after a crash, and is released by the same
    row update that finishes the rollout.
    """
    rows = _targets(conn, fleet, device_ids)
    _check_bundles(conn, model, version, rows)
    _refuse_held(conn, {r.id for r in rows})
    fleets = {r.fleet for r in rows}
    target = {"fleet": fleet} if not device_ids else {"devices": [r.id for r in rows]}
    rid = conn.execute(sa.insert(rollouts).values(
        model_name=model, model_version=version, fleet=fleet or sorted(fleets)[0],
        target=target, policy=policy.model_dump(mode="json"), state="pending", wave=0,
        phase_started_at=now, created_at=now, updated_at=now).returning(rollouts.c.id)).scalar()
    plan = policy.plan(len(rows))
    _insert_devices(conn, [
        {"rollout_id": rid, "device_id": r.id, "wave": next(w for w, c in enumerate(plan)
                                                            if i < c),
         "cmd_id": cmd_id(rid, r.id, "u"), "old_version": r.model_version,
         "state": "skipped" if r.model_version == version else "pending", "updated_at": now}
        for i, r in enumerate(rows)])
    event(conn, rid, "pending", f"{model} {version} to {len(rows)} device(s) in "
          f"{len(plan)} step(s) ({plan_text(plan)})", now, {"plan": plan})
    return rid


def release_devices(conn: Connection, rid: int, now: float) -> None:
    """A rollout reached a terminal state: its devices are free for the next one."""
    conn.execute(sa.update(rollout_devices).where(
        rollout_devices.c.rollout_id == rid, rollout_devices.c.released_at.is_(None))
        .values(released_at=now))


def _row(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


def rollout_doc(conn: Connection, rid: int, detail: bool = True) -> dict[str, Any] | None:
    """A rollout as the API shows it (with devices and timeline when ``detail``)."""
    row = conn.execute(sa.select(rollouts).where(rollouts.c.id == rid)).first()
    if row is None:
        return None
    doc = _row(row)
    doc["model"], doc["version"] = doc.pop("model_name"), doc.pop("model_version")
    devs = [_row(r) for r in conn.execute(sa.select(rollout_devices).where(
        rollout_devices.c.rollout_id == rid).order_by(rollout_devices.c.device_id))]
    counts: dict[str, int] = {}
    for d in devs:
        counts[d["state"]] = counts.get(d["state"], 0) + 1
    doc["device_counts"] = counts
    doc["waves"] = RolloutPolicy.model_validate(doc["policy"]).plan(len(devs))
    if detail:
        doc["devices"] = devs
        doc["timeline"] = [_row(e) for e in conn.execute(sa.select(rollout_events).where(
            rollout_events.c.rollout_id == rid).order_by(rollout_events.c.id))]
    return doc


def list_rollouts(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The newest rollouts first, without devices and timeline."""
    ids = conn.execute(sa.select(rollouts.c.id).order_by(rollouts.c.id.desc()).limit(limit))
    return [rollout_doc(conn, rid, detail=False) for (rid,) in ids]


def abort_rollout(conn: Connection, rid: int, now: float) -> str:
    """Halt a running rollout (the controller then rolls it back); returns its state."""
    row = conn.execute(sa.select(rollouts.c.state).where(rollouts.c.id == rid)).first()
    if row is None:
        raise RolloutError(f"no rollout {rid}")
    if row.state not in HALTABLE:
        return row.state
    verdict = {"outcome": "aborted", "reasons": ["aborted by a user"], "figures": {}}
    done = conn.execute(sa.update(rollouts).where(
        rollouts.c.id == rid, rollouts.c.state.in_(HALTABLE)).values(
        state="halted", verdict=verdict, phase_started_at=now, updated_at=now)).rowcount
    if done:
        event(conn, rid, "halted", "aborted by a user", now)
    return "halted" if done else row.state
