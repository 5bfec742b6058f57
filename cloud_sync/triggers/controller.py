"""The controller step (leader only): score the last windows of every fleet's model
versions, store the scores, fire triggers where the fleet's policy says so. The device
windows come from the window rows ingest keeps (``triggers.windows``).

Two phases: ``score_step`` reads the fleet's telemetry and computes every score and
decision (reads only: in ``serve`` outside any write transaction, so SQLite's write lock
and PostgreSQL's row locks are never held for fleet-sized work); ``apply_step`` then, in
one short transaction, upserts the scores, inserts a trigger under its unique dedupe key
and puts its actions in the outbox. Nothing is sent from here (see ``cloud_sync.actions``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection, Engine

from cloud_sync.config import CloudConfig, drift_lookback_s
from cloud_sync.drift.window import DriftError
from cloud_sync.store import windows as stored_windows
from cloud_sync.triggers import incremental as incremental_step
from cloud_sync.triggers.decide import decide, evidence
from cloud_sync.triggers.fire import fire, in_cooldown
from cloud_sync.triggers.scoring import (
    last_windows,
    reference_for,
    result_rows,
    score_rows,
    score_windows,
    task_for,
    upsert_scores,
)
from cloud_sync.triggers.windows import FleetBounds, device_windows, summary
from edge_agent.errors import EdgekitError, first_line

log = logging.getLogger(__name__)


@dataclass
class StepReport:
    """What one controller step did."""

    groups: int = 0
    scores: int = 0
    fired: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)  # windows from rows / messages
    marks: list[dict[str, int]] = field(default_factory=list, repr=False)
    more: bool = False  # device windows still wait: run the next step soon

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"groups": self.groups, "scores": self.scores, "fired": self.fired,
                "skipped": self.skipped, **self.sources,
                "device_windows_scored": len(self.marks), "more": self.more}


@dataclass
class Scored:
    """One group's scores and decision, computed from reads alone (nothing written yet)."""

    key: Any
    policy: Any
    bounds: list
    group: Any
    rows: list[dict[str, Any]]
    decision: Any = None


class References:
    """Each (model, version)'s reference statistics and task, read once per step."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.found: dict[tuple[str, str], tuple[Any, str]] = {}

    def __call__(self, key: tuple[str, str, str]) -> tuple[Any, str]:
        if key[1:] not in self.found:
            self.found[key[1:]] = (reference_for(self.conn, key[1], key[2]),
                                   task_for(self.conn, key[1], key[2]))
        return self.found[key[1:]]


def score_step(conn: Connection, cfg: CloudConfig, now: float
               ) -> tuple[list[Scored], StepReport]:
    """Score every (fleet, model, version) with recent telemetry: fleets whose windows the
    rows hold completely incrementally (``triggers.incremental``), others from every
    device window. Reads only, so ``serve`` runs it outside any write transaction."""
    report = StepReport()
    fleets = FleetBounds(cfg.triggers.policy_for, lambda p: last_windows(p, now))
    coverage = stored_windows.covered(conn)
    incremental = incremental_step.complete_fleets(coverage, fleets)
    refs = References(conn)
    lookback = drift_lookback_s(cfg.triggers)
    groups = device_windows(conn, fleets, coverage, lookback, now, skip=incremental)
    report.sources = summary(groups)
    scored = [item for key, found in sorted(groups.items())
              if (item := _score_all(key, found, cfg, refs, report, now)) is not None]
    if incremental:
        scored += _score_incremental(conn, cfg, fleets, incremental, refs, report,
                                     now - lookback, now)
    return scored, report


def _skip(report: StepReport, key: Any, exc: EdgekitError) -> None:
    report.skipped["/".join(key)] = first_line(exc)
    log.warning("drift of %s not scored: %s", "/".join(key), first_line(exc))


def _score_all(key: Any, found: Any, cfg: CloudConfig, refs: References, report: StepReport,
               now: float) -> Scored | None:
    """Every device window of a group, scored (windows the rows do not hold completely)."""
    policy = cfg.triggers.policy_for(key[0])
    try:
        if found.error:
            raise DriftError(found.error)
        ref, task = refs(key)
        group = score_windows(key, found.devices, ref, policy, found.bounds, task)
    except EdgekitError as exc:  # bad manifest, histograms on other bins: this group only
        _skip(report, key, exc)
        return None
    return Scored(key, policy, found.bounds, group, score_rows(group, now),
                  None if group.skipped else decide(group, policy))


def _score_incremental(conn: Connection, cfg: CloudConfig, fleets: FleetBounds,
                       incremental: set[str], refs: References, report: StepReport,
                       start: float, now: float) -> list[Scored]:
    """The groups of fleets the rows hold completely: waiting device windows, the pooled
    fleet, the decision on stored and fresh verdicts."""
    waiting = incremental_step.score_waiting(conn, incremental, fleets, refs, start, now,
                                             cfg.triggers.device_windows_per_step)
    report.marks, report.more = waiting.marks, waiting.more
    report.sources["windows_from_rows"] = report.sources.get("windows_from_rows", 0) + \
        len(waiting.marks)
    parts = incremental_step.fleet_parts(conn, incremental, fleets, start, now)
    out = []
    for key in sorted(set(parts) | set(waiting.results) | set(waiting.errors)):
        policy, bounds = fleets(key[0])
        fresh = waiting.results.get(key, {})
        try:
            if key in waiting.errors:
                raise DriftError(waiting.errors[key])
            ref, task = refs(key)
            if ref is None:
                group = score_windows(key, {}, None, policy, bounds, task)
                out.append(Scored(key, policy, bounds, group, score_rows(group, now)))
                continue
            group = incremental_step.group_scores(conn, key, policy, bounds,
                                                  parts.get(key, {}), fresh, ref, task)
        except EdgekitError as exc:
            _skip(report, key, exc)
            continue
        decision = decide(group, policy)
        if decision.fire:
            incremental_step.with_evidence(conn, group, decision.devices, fresh)
        rows = incremental_step.fresh_rows(key, fresh, now)
        for results in filter(None, group.fleet):
            rows += result_rows(key, None, results, now)
        out.append(Scored(key, policy, bounds, group, rows, decision))
    return out


def apply_step(conn: Connection, cfg: CloudConfig, scored: list[Scored], report: StepReport,
               now: float) -> StepReport:
    """Store the scores and fire the triggers ``score_step`` decided on (a short write)."""
    incremental_step.mark_scored(conn, report.marks)
    for item in scored:
        key, group = item.key, item.group
        report.groups += 1
        report.scores += upsert_scores(conn, item.rows)
        if group.skipped:
            report.skipped["/".join(key)] = group.skipped
            continue
        decision = item.decision
        if not decision.fire or in_cooldown(conn, key, item.policy, now):
            continue
        trigger_id = fire(conn, key, item.policy, evidence(group, decision, item.policy),
                          item.bounds[-1][1], now, cfg.data_dir / "exports")
        if trigger_id is not None:
            log.info("trigger %d fired for %s: %s", trigger_id, "/".join(key), decision.reason)
            report.fired.append(trigger_id)
    return report


def controller_step(conn: Connection, cfg: CloudConfig, now: float) -> StepReport:
    """Score, store and decide every (fleet, model, version) with recent telemetry, on one
    connection (the CLI and tests; ``drift_job`` splits reads from the write)."""
    scored, report = score_step(conn, cfg, now)
    return apply_step(conn, cfg, scored, report, now)


def drift_job(cfg: CloudConfig):
    """The leader's job ``(engine, now) -> report``: scoring reads on a connection of
    their own, then one short write transaction for the scores and triggers."""
    from cloud_sync.store import transaction

    def run(engine: Engine, now: float) -> dict[str, Any]:
        with engine.connect() as conn:
            scored, report = score_step(conn, cfg, now)
            conn.rollback()
        with transaction(engine) as conn:
            return apply_step(conn, cfg, scored, report, now).to_dict()
    return run
