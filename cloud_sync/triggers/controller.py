"""The controller step (leader only): score the last windows of every fleet's model
versions, store the scores, fire triggers where the fleet's policy says so.

Everything happens in the caller's transaction, rows first: scores are upserted,
a trigger is inserted under its unique dedupe key, its actions go to the outbox;
nothing is sent from here (see ``cloud_sync.actions``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from cloud_sync.config import CloudConfig, drift_lookback_s
from cloud_sync.triggers.decide import decide, evidence
from cloud_sync.triggers.fire import fire, in_cooldown
from cloud_sync.triggers.scoring import (
    last_windows,
    recent_telemetry,
    reference_for,
    score_group,
    score_rows,
    task_for,
    upsert_scores,
)
from edge_agent.errors import EdgekitError, first_line

log = logging.getLogger(__name__)


@dataclass
class StepReport:
    """What one controller step did."""

    groups: int = 0
    scores: int = 0
    fired: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"groups": self.groups, "scores": self.scores, "fired": self.fired,
                "skipped": self.skipped}


def controller_step(conn: Connection, cfg: CloudConfig, now: float) -> StepReport:
    """Score, store and decide every (fleet, model, version) with recent telemetry."""
    report = StepReport()
    groups = recent_telemetry(conn, now - drift_lookback_s(cfg.triggers), now)
    references: dict[tuple[str, str], Any] = {}
    tasks: dict[tuple[str, str], str] = {}
    for key, msgs in sorted(groups.items()):
        policy = cfg.triggers.policy_for(key[0])
        bounds = last_windows(policy, now)
        msgs = [m for m in msgs if bounds[0][0] <= m.ts < bounds[-1][1]]
        if not msgs:
            continue
        try:
            if key[1:] not in references:
                references[key[1:]] = reference_for(conn, key[1], key[2])
                tasks[key[1:]] = task_for(conn, key[1], key[2])
            group = score_group(key, msgs, references[key[1:]], policy, bounds,
                                tasks[key[1:]])
        except EdgekitError as exc:  # bad manifest, histograms on other bins: this group only
            report.skipped["/".join(key)] = first_line(exc)
            log.warning("drift of %s not scored: %s", "/".join(key), first_line(exc))
            continue
        report.groups += 1
        report.scores += upsert_scores(conn, score_rows(group, now))
        if group.skipped:
            report.skipped["/".join(key)] = group.skipped
            continue
        decision = decide(group, policy)
        if not decision.fire or in_cooldown(conn, key, policy, now):
            continue
        trigger_id = fire(conn, key, policy, evidence(group, decision, policy), bounds[-1][1],
                          now, cfg.data_dir / "exports")
        if trigger_id is not None:
            log.info("trigger %d fired for %s: %s", trigger_id, "/".join(key), decision.reason)
            report.fired.append(trigger_id)
    return report
