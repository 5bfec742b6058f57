"""The outbox's rows: claim a due action (safe with two runners), record an attempt,
retry with exponential backoff or give up.

Claiming is ``UPDATE ... WHERE id = ? AND state = 'pending' AND next_attempt_at <= now``
and counts only when it changed one row: of two runners, one gets the action. An
action left ``running`` by a runner that died is pending again after ``lease_s``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.store.schema import action_attempts, actions, triggers
from edge_agent.mqtt_link import backoff_delay

ERROR_CHARS = 500


def release_stale(conn: Connection, now: float, lease_s: float) -> int:
    """Running actions claimed more than ``lease_s`` ago go back to pending."""
    return conn.execute(sa.update(actions).where(
        actions.c.state == "running", actions.c.claimed_at < now - lease_s)
        .values(state="pending", updated_at=now)).rowcount


def due(conn: Connection, now: float, limit: int) -> list[int]:
    """Ids of pending actions whose next attempt is due, oldest first."""
    return list(conn.execute(sa.select(actions.c.id).where(
        actions.c.state == "pending", actions.c.next_attempt_at <= now)
        .order_by(actions.c.next_attempt_at, actions.c.id).limit(limit)).scalars())


def claim(conn: Connection, action_id: int, now: float) -> bool:
    """Take one due action for this runner; False when another runner has it."""
    return conn.execute(sa.update(actions).where(
        actions.c.id == action_id, actions.c.state == "pending",
        actions.c.next_attempt_at <= now).values(
        state="running", attempts=actions.c.attempts + 1, claimed_at=now,
        updated_at=now)).rowcount == 1


def load(conn: Connection, action_id: int) -> dict[str, Any]:
    """The action row and its trigger row (as mappings)."""
    action = conn.execute(sa.select(actions).where(actions.c.id == action_id)).mappings().one()
    trigger = conn.execute(sa.select(triggers).where(
        triggers.c.id == action["trigger_id"])).mappings().one()
    return {"action": dict(action), "trigger": dict(trigger)}


def finish(conn: Connection, action: dict[str, Any], started: float, now: float,
           error: str | None, backoff: tuple[float, float]) -> str:
    """Record the attempt of a claimed ``action`` (its row as loaded after ``claim``) and
    the action's next state: done, pending again after a backoff, or failed."""
    attempt = action["attempts"]
    error = None if error is None else error[:ERROR_CHARS]
    conn.execute(sa.insert(action_attempts).values(
        action_id=action["id"], attempt=attempt, started_at=started, finished_at=now,
        ok=error is None, error=error))
    if error is None:
        state, next_at = "done", now
    elif attempt >= action["max_attempts"]:
        state, next_at = "failed", now
    else:
        state, next_at = "pending", now + backoff_delay(attempt - 1, *backoff)
    conn.execute(sa.update(actions).where(actions.c.id == action["id"]).values(
        state=state, next_attempt_at=next_at, last_error=error, claimed_at=None,
        updated_at=now))
    return state
