"""The rollout state machine, one handler per state (``HANDLERS``), and
``controller_step``: every decision is a row update in the caller's transaction; the
commands it implies are returned, to be published after the commit.

    pending -> canary -> baking -> wave -> baking -> ... -> done
    canary | wave | baking -> halted -> rolling_back -> rolled_back

Moves are conditional on the state read (``UPDATE ... WHERE state = <read>``), so two
controllers, or a controller and an abort, never both act on one move.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.registry.models import get_model
from cloud_sync.rollouts import progress
from cloud_sync.rollouts.health import Context, figures, judge
from cloud_sync.rollouts.policy import RolloutPolicy
from cloud_sync.rollouts.progress import FAILED, FINISHED, SETTLED, TOOK, Step
from cloud_sync.rollouts.store import TERMINAL, event, release_devices
from cloud_sync.rollouts.task_health import task_health
from cloud_sync.store.chunks import rows_in_chunks
from cloud_sync.store.schema import devices, rollout_devices, rollouts
from cloud_sync.triggers.scoring import reference_for, task_for

log = logging.getLogger(__name__)


def _move(step: Step, r: Any, state: str, message: str, figs: dict | None = None,
          **values: Any) -> bool:
    """``r`` to ``state`` if nobody moved it since it was read; logs the event."""
    moved = step.conn.execute(sa.update(rollouts).where(
        rollouts.c.id == r.id, rollouts.c.state == r.state, rollouts.c.wave == r.wave)
        .values(state=state, updated_at=step.now, **values)).rowcount
    if moved:
        if state in TERMINAL:
            release_devices(step.conn, r.id, step.now)
        event(step.conn, r.id, state, message, step.now, figs)
        log.info("rollout %d: %s -> %s: %s", r.id, r.state, state, message)
    return bool(moved)


def _rows(step: Step, r: Any, sent_waves: bool = False) -> list[Any]:
    """The rollout's devices; ``sent_waves``: only those of the waves sent so far (a step
    of a canary or a wave reads those, not the whole fleet's rows)."""
    c = rollout_devices.c
    query = sa.select(rollout_devices).where(c.rollout_id == r.id)
    if sent_waves:
        query = query.where(c.wave <= r.wave)
    return list(step.conn.execute(query.order_by(c.device_id)))


def _total(step: Step, r: Any) -> int:
    return step.conn.execute(sa.select(sa.func.count()).select_from(rollout_devices).where(
        rollout_devices.c.rollout_id == r.id)).scalar() or 0


def _halt(step: Step, r: Any, verdict: dict[str, Any]) -> bool:
    return _move(step, r, "halted", "; ".join(verdict["reasons"])[:500], verdict["figures"],
                 verdict=verdict, phase_started_at=step.now)


def failure_check(step: Step, r: Any, rows: list[Any], policy: RolloutPolicy) -> bool:
    """Halt when failed devices are over ``max_failure_pct`` of at least ``min_finished``."""
    t = policy.thresholds
    states = Counter(row.state for row in rows)
    finished = sum(states[s] for s in FINISHED)
    failed = sum(states[s] for s in FAILED)
    if finished < t.min_finished or failed * 100.0 / finished <= t.max_failure_pct:
        return False
    figs = {"finished": finished, "failed": states["failed"],
            "rolled_back_on_device": states["rolled_back"],
            "failure_pct": round(failed * 100.0 / finished, 2),
            "failed_devices": sorted(row.device_id for row in rows if row.state in FAILED)}
    return _halt(step, r, {"outcome": "bad", "kind": "failures", "figures": figs, "reasons": [
        f"{failed} of {finished} finished device(s) failed the update "
        f"({figs['failure_pct']:g}% > {t.max_failure_pct:g}%)"]})


def _start(step: Step, r: Any, policy: RolloutPolicy) -> None:
    _move(step, r, "canary", "sending to the canary", phase_started_at=step.now)


def _answering(rows: list[Any], states: tuple[str, ...] = progress.ANSWERING) -> list[str]:
    """The devices whose answers a step reads (not the whole rollout: a wave's)."""
    return [x.device_id for x in rows if x.state in states]


def _deploy(step: Step, r: Any, policy: RolloutPolicy) -> None:
    rows = _rows(step, r, sent_waves=True)
    found = progress.results(step.conn, _answering(rows), r.created_at)
    progress.collect(step, rows, found)
    model = get_model(step.conn, r.model_name, r.model_version)
    bundles = {b.profile: b for b in model.bundles} if model else {}
    progress.send_updates(step, r, _rows(step, r, sent_waves=True), policy, bundles)
    rows = _rows(step, r, sent_waves=True)  # later waves are pending: no failure among them
    if failure_check(step, r, rows, policy):
        return
    if all(row.state in SETTLED for row in rows):
        _move(step, r, "baking", f"step {r.wave} installed; baking {policy.bake_s:g} s",
              phase_started_at=step.now)


HEALTH_SAMPLE = 500  # devices per side a health verdict reads: a step's work stays bounded


def sample(ids: list[str], k: int, salt: Any) -> list[str]:
    """At most ``k`` of ``ids``: the same ones at every step of one rollout (``salt``)."""
    if len(ids) <= k:
        return sorted(ids)
    return sorted(sorted(ids, key=lambda d: zlib.crc32(f"{salt}:{d}".encode()))[:k])


def health_verdict(step: Step, r: Any, rows: list[Any], policy: RolloutPolicy):
    """Canary (devices on the new version) vs control (the fleet's other devices, on
    other versions) over the bake window so far, like for like (``health.Context``).
    Each side is a stable sample of at most ``HEALTH_SAMPLE`` devices, so a step reads the
    telemetry of a thousand devices at most, however large the fleet and the wave."""
    on_new = {row.device_id for row in rows if row.state in TOOK}
    others = [d for d in step.conn.execute(sa.select(devices.c.id).where(
        devices.c.fleet == r.fleet)).scalars() if d not in on_new]
    took = sample(list(on_new), HEALTH_SAMPLE, r.id)
    control = sample(others, HEALTH_SAMPLE, r.id)
    fleet = {d.id: d for d in rows_in_chunks(step.conn, took + control, lambda ids: sa.select(
        devices.c.id, devices.c.profile, devices.c.model_version).where(devices.c.id.in_(ids)))}
    start = r.phase_started_at
    canary = figures(step.conn, took, r.model_version, start, step.now + 1)
    ctrl = figures(step.conn, control, None, start, step.now + 1, exclude=r.model_version)
    return judge(canary, ctrl, took, policy.thresholds, step.now, policy.heartbeat_s, start,
                 _context(step, r, took, fleet, policy))


def _context(step: Step, r: Any, took: list[str], fleet: dict[str, Any],
             policy: RolloutPolicy) -> Context:
    """Profiles, the canary devices' own p95 before the rollout, and the references."""
    before = figures(step.conn, took, None, r.created_at - max(policy.bake_s, 60.0),
                     r.created_at, exclude=r.model_version)
    versions = Counter(d.model_version for i, d in fleet.items()
                       if i not in set(took) and d.model_version
                       and d.model_version != r.model_version)
    control_version = versions.most_common(1)[0][0] if versions else None

    task = task_for(step.conn, r.model_name, r.model_version)

    def classes(version: str | None) -> list[float] | None:
        ref = reference_for(step.conn, r.model_name, version) if version else None
        return task_health(task).reference_classes(ref) if ref is not None else None

    return Context(profiles={i: d.profile for i, d in fleet.items()},
                   own_before_p95=before.p95_by_device,
                   canary_reference=classes(r.model_version),
                   control_reference=classes(control_version), task=task)


def _bake(step: Step, r: Any, policy: RolloutPolicy) -> None:
    rows = _rows(step, r, sent_waves=True)
    progress.collect(step, rows, progress.results(step.conn, _answering(rows), r.created_at))
    rows = _rows(step, r, sent_waves=True)
    if failure_check(step, r, rows, policy):
        return
    verdict = health_verdict(step, r, rows, policy)
    doc = {**verdict.to_dict(), "kind": "health", "wave": r.wave}
    elapsed = step.now - r.phase_started_at
    if verdict.outcome == "bad" and (verdict.hard or elapsed >= policy.bake_s):
        _halt(step, r, doc)  # soft checks are judged on the whole bake, not its first seconds
    elif verdict.outcome == "insufficient" and elapsed > policy.bake_limit_s:
        _halt(step, r, {**doc, "reasons": ["not enough data to judge: " + verdict.reasons[0]]})
    elif verdict.outcome == "ok" and elapsed >= policy.bake_s:
        plan = policy.plan(_total(step, r))
        if r.wave + 1 >= len(plan):
            _move(step, r, "done", "every step passed", doc["figures"], verdict=doc)
        else:
            _move(step, r, "wave", f"step {r.wave} healthy; sending step {r.wave + 1}",
                  doc["figures"], verdict=doc, wave=r.wave + 1, phase_started_at=step.now)


def _halted(step: Step, r: Any, policy: RolloutPolicy) -> None:
    c = rollout_devices.c
    step.conn.execute(sa.update(rollout_devices).where(
        c.rollout_id == r.id, c.state == "pending").values(
        state="skipped", updated_at=step.now, result={"error": "rollout halted before sending"}))
    _move(step, r, "rolling_back", "rolling back every device on the new version")


def _rolling_back(step: Step, r: Any, policy: RolloutPolicy) -> None:
    rows = _rows(step, r)
    found = progress.results(step.conn, _answering(rows, (*progress.ANSWERING, "rollback_sent")),
                             r.created_at)
    progress.collect(step, rows, found)
    progress.roll_back(step, r, _rows(step, r), policy, found)
    open_states = ("sent", *TOOK, "rollback_sent")
    rows = _rows(step, r)
    if not any(row.state in open_states for row in rows):
        counts = Counter(row.state for row in rows)
        _move(step, r, "rolled_back", "rollback confirmed by "
              f"{counts['rollback_confirmed']} device(s)", dict(counts))


Handler = Callable[[Step, Any, RolloutPolicy], None]
HANDLERS: dict[str, Handler] = {
    "pending": _start, "canary": _deploy, "wave": _deploy, "baking": _bake,
    "halted": _halted, "rolling_back": _rolling_back,
}


@dataclass
class StepReport:
    """What one step did: rollouts looked at, states after, commands to publish."""

    rollouts: dict[int, str] = field(default_factory=dict)
    outgoing: list[progress.Outgoing] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"rollouts": self.rollouts, "commands": len(self.outgoing)}


def controller_step(conn: Connection, artifact_url: Callable[..., str],
                    now: float) -> StepReport:
    """Advance every open rollout by one handler call (idempotent)."""
    step = Step(conn, now, artifact_url)
    report = StepReport()
    for r in conn.execute(sa.select(rollouts).where(rollouts.c.state.notin_(TERMINAL))
                          .order_by(rollouts.c.id)).all():
        HANDLERS[r.state](step, r, RolloutPolicy.model_validate(r.policy))
        report.rollouts[r.id] = conn.execute(sa.select(rollouts.c.state).where(
            rollouts.c.id == r.id)).scalar()
    report.outgoing = step.outgoing
    return report
