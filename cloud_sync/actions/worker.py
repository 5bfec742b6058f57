"""Work the outbox once: release stale claims, then claim, run and record each due action.

Each claim, and each result, is its own short transaction; the action itself (a
program, an HTTP POST, an MQTT publish) runs outside any transaction.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from sqlalchemy.engine import Engine

from cloud_sync.actions.kinds import ACTION_KINDS, ActionContext
from cloud_sync.actions.outbox import claim, due, finish, load, release_stale
from cloud_sync.config import CloudConfig
from cloud_sync.store import transaction
from cloud_sync.triggers.queries import trigger_doc
from edge_agent.errors import EdgekitError, first_line

log = logging.getLogger(__name__)
LEASE_S = 3600.0


def _run(kind: str, ctx: ActionContext) -> str | None:
    runner = ACTION_KINDS.get(kind)
    if runner is None:
        return f"unknown action kind {kind!r}; one of {', '.join(ACTION_KINDS)}"
    try:
        runner(ctx)
    except EdgekitError as exc:
        return first_line(exc)
    return None


def run_due_actions(engine: Engine, cfg: CloudConfig, now: float | None = None,
                    limit: int = 50) -> Counter:
    """Run every due action once; returns how many ended done, pending (retry) or failed."""
    now = time.time() if now is None else now
    with transaction(engine) as conn:
        release_stale(conn, now, LEASE_S)
        ids = due(conn, now, limit)
    states: Counter = Counter()
    for action_id in ids:
        with transaction(engine) as conn:
            if not claim(conn, action_id, now):
                continue
            row = load(conn, action_id)
        action, trigger = row["action"], row["trigger"]
        ctx = ActionContext(trigger_doc(trigger), action["config"], action["idx"], cfg)
        started = time.time()
        error = _run(action["kind"], ctx)
        policy = trigger["policy"] or {}
        backoff = (policy.get("backoff_s", 10.0), policy.get("backoff_max_s", 600.0))
        with transaction(engine) as conn:
            state = finish(conn, action, started, max(now, time.time()), error, backoff)
        if error:
            log.warning("action %d (%s) of trigger %d: %s -> %s", action_id, action["kind"],
                        trigger["id"], error, state)
        states[state] += 1
    return states
