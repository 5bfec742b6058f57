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
from cloud_sync.triggers.decide import decide, evidence
from cloud_sync.triggers.fire import fire, in_cooldown
from cloud_sync.triggers.scoring import (
    last_windows,
    reference_for,
    score_rows,
    score_windows,
    task_for,
    upsert_scores,
)
from cloud_sync.triggers.windows import device_windows, summary
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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"groups": self.groups, "scores": self.scores, "fired": self.fired,
                "skipped": self.skipped, **self.sources}


@dataclass
class Scored:
    """One group's scores and decision, computed from reads alone (nothing written yet)."""

    key: Any
    policy: Any
    bounds: list
    group: Any
    rows: list[dict[str, Any]]
    decision: Any = None


def score_step(conn: Connection, cfg: CloudConfig, now: float
               ) -> tuple[list[Scored], StepReport]:
    """Read the fleet's device windows (the window rows ingest keeps; messages only for
    windows those do not hold) and score every (fleet, model, version): reads only, so
    ``serve`` runs it outside any write transaction."""
    report = StepReport()
    groups = device_windows(conn, cfg.triggers.policy_for, lambda p: last_windows(p, now),
                            drift_lookback_s(cfg.triggers), now)
    report.sources = summary(groups)
    references: dict[tuple[str, str], Any] = {}
    tasks: dict[tuple[str, str], str] = {}
    scored: list[Scored] = []
    for key, found in sorted(groups.items()):
        policy = cfg.triggers.policy_for(key[0])
        try:
            if found.error:
                raise DriftError(found.error)
            if key[1:] not in references:
                references[key[1:]] = reference_for(conn, key[1], key[2])
                tasks[key[1:]] = task_for(conn, key[1], key[2])
            group = score_windows(key, found.devices, references[key[1:]], policy,
                                  found.bounds, tasks[key[1:]])
        except EdgekitError as exc:  # bad manifest, histograms on other bins: this group only
            report.skipped["/".join(key)] = first_line(exc)
            log.warning("drift of %s not scored: %s", "/".join(key), first_line(exc))
            continue
        scored.append(Scored(key, policy, found.bounds, group, score_rows(group, now),
                             None if group.skipped else decide(group, policy)))
    return scored, report


def apply_step(conn: Connection, cfg: CloudConfig, scored: list[Scored], report: StepReport,
               now: float) -> StepReport:
    """Store the scores and fire the triggers ``score_step`` decided on (a short write)."""
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
