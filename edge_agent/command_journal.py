"""The command journal: a command is on disk before the broker is told it arrived.

Every command with a ``cmd_id`` is recorded here (in the outbox's SQLite file: WAL,
``synchronous=FULL``) before the MQTT link acknowledges it to the broker, so a
device killed at any moment either never acknowledged the command (the broker
sends it again on reconnect) or finds it in the journal at start and handles it.

States of a row::

    pending    recorded, not answered yet (handled now, or at the next start)
    answered   a result is stored; for an update the first result (phase probation)
               is replaced by the final one (committed / rolled_back)

A result is queued in the outbox and stored in the journal in one transaction, so
a command is never both answered and run again. A repeated ``cmd_id`` is never run
twice: while pending it is ignored (it is already on its way), once answered the
stored result is sent again, byte for byte (same ``seq``; the cloud deduplicates).
Answered rows are kept ``KEEP_S`` (30 days: longer than a broker keeps a session)
and at most ``KEEP_ROWS``; the oldest go first.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Callable

from edge_agent.outbox import Outbox

KEEP_S = 30 * 86400.0
KEEP_ROWS = 10000
NEW, PENDING, ANSWERED = "new", "pending", "answered"


@dataclass
class Recorded:
    """What the journal knew of a command when it arrived."""

    state: str  # NEW (first time), PENDING (seen, not answered) or ANSWERED
    result: bytes | None = None  # the stored result when ANSWERED


class CommandJournal:
    """Recent commands and their results, durable across restarts; see the module docstring."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def record(self, cmd_id: str, ctype: str, payload: bytes) -> Recorded:
        """Store a command the first time it is seen; say what was known of it before."""
        def work(db: sqlite3.Connection) -> Recorded:
            row = db.execute("SELECT state, result FROM commands WHERE cmd_id = ?",
                             (cmd_id,)).fetchone()
            if row is not None:
                return Recorded(row[0], bytes(row[1]) if row[1] is not None else None)
            db.execute("INSERT INTO commands (cmd_id, type, payload, received, state) "
                       "VALUES (?, ?, ?, ?, ?)", (cmd_id, ctype, bytes(payload), time.time(),
                                                  PENDING))
            _prune(db, time.time())
            return Recorded(NEW)
        return self.outbox.run(work)  # type: ignore[return-value]

    def pending(self) -> list[tuple[str, bytes]]:
        """(cmd_id, payload) of every command recorded but not answered, oldest first."""
        rows = self.outbox.query("SELECT cmd_id, payload FROM commands WHERE state = ? "
                                 "ORDER BY received, rowid", (PENDING,))
        return [(cmd_id, bytes(payload)) for cmd_id, payload in rows]

    def state(self, cmd_id: str) -> str | None:
        """PENDING, ANSWERED, or None for a command the journal does not hold."""
        rows = self.outbox.query("SELECT state FROM commands WHERE cmd_id = ?", (cmd_id,))
        return rows[0][0] if rows else None

    def answer(self, cmd_id: str, topic: str, build: Callable[[int], bytes]) -> int:
        """Queue a result (``build(seq)``) and store it as this command's answer, atomically."""
        def store(db: sqlite3.Connection, payload: bytes) -> None:
            db.execute("UPDATE commands SET state = ?, result = ?, answered = ? WHERE cmd_id = ?",
                       (ANSWERED, bytes(payload), time.time(), cmd_id))
        return self.outbox.put("cmd/result", topic, build, also=store)

    def resend(self, topic: str, result: bytes) -> None:
        """Queue a stored result again (a repeated command gets the original answer)."""
        self.outbox.put_stored("cmd/result", topic, result)


def _prune(db: sqlite3.Connection, now: float) -> None:
    db.execute("DELETE FROM commands WHERE state = ? AND received < ?", (ANSWERED, now - KEEP_S))
    db.execute("DELETE FROM commands WHERE state = ? AND rowid NOT IN "
               "(SELECT rowid FROM commands ORDER BY received DESC LIMIT ?)",
               (ANSWERED, KEEP_ROWS))
