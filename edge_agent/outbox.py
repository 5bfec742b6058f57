"""The agent's durable outbox: every device -> cloud message waits here until the broker has it.

One SQLite file in WAL mode with ``synchronous=FULL``: when :meth:`Outbox.put`
returns, the message and its ``seq`` are on disk, and a crash (even SIGKILL or
power loss) keeps every committed message and leaves a database that passes
``PRAGMA integrity_check``. The MQTT link reads :meth:`Outbox.pending` in order and
calls :meth:`Outbox.ack` when the broker's PUBACK arrives, so delivery is
at-least-once; a resent message carries the same stored bytes, hence the same ``seq``.

Sequence numbers: one counter per message kind (``telemetry``, ``samples``, ...),
starting at 1, stored in the same transaction as the message. A seq is never
reused, across restarts and crashes alike; a put that fails (``build`` raised, or
the message is too big) rolls back and consumes nothing.

Incarnation: seqs are only as durable as this file. A new file (first start, a
file lost or moved away, a re-imaged device) starts every counter at 1 again, so
it also gets a new random :attr:`Outbox.incarnation`, stored in the file and
carried in every message (``incarnation``), and the cloud deduplicates and counts
gaps per ``(device, incarnation, kind, seq)``. An outbox of an older agent gets
its incarnation when this agent first opens it.

Schema version: only a change an older agent cannot live with bumps
``SCHEMA_VERSION`` (an older agent refuses a newer file, and the operator's way out,
moving the file away, loses what it holds). Additive tables such as ``identity``
keep the version: ``_SCHEMA`` is idempotent and runs on every open, and an older
agent opening the file ignores what it does not know (a downgraded agent then sends
without an incarnation, which the cloud reads as the legacy one).

Drop policy: telemetry and samples are time series and the newest matter most,
so when the outbox is over its caps it drops the OLDEST messages first:

* size: after each put, while the queued payload bytes exceed ``max_bytes``, the
  oldest messages are deleted (never the one just put);
* age: on each put and each :meth:`pending`, messages created more than
  ``max_age_s`` ago are deleted.

Every dropped message is counted, with its bytes, in counters stored in the same
file (they survive restarts): these are the ``outbox.dropped`` figures the agent
reports. A message that may have been sent but not yet acknowledged still counts
as dropped when it is deleted this way. A single message larger than
``max_bytes`` is refused with :class:`OutboxError`, never silently dropped.

Thread safety: one connection guarded by one lock; any thread may call any method.
One process at a time should own a given file.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge_agent.errors import EdgekitError

SCHEMA_VERSION = 2  # not 3 for the additive identity table: see "Schema version" above
# Versions an interim build stamped on a file whose layout is this one (identity added
# under 3): opened as this version and stamped back, so no agent refuses them.
_SAME_LAYOUT_AS_CURRENT = frozenset({3})
INCARNATION_BYTES = 8  # 16 hex characters: the chance two outboxes of a device share one is nil
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_created ON messages(created);
CREATE TABLE IF NOT EXISTS seqs (kind TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('dropped', 0), ('dropped_bytes', 0);
CREATE TABLE IF NOT EXISTS identity (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    cmd_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    payload BLOB NOT NULL,
    received REAL NOT NULL,
    state TEXT NOT NULL,
    result BLOB,
    answered REAL
);
CREATE INDEX IF NOT EXISTS commands_received ON commands(received);
"""


class OutboxError(EdgekitError):
    """The outbox cannot store a message, or its file cannot be used."""


@dataclass
class OutboxRow:
    """One stored message, as the link publishes it."""

    id: int
    kind: str
    topic: str
    payload: bytes
    retain: bool
    created: float


@dataclass
class OutboxStats:
    """What is queued and what the caps have dropped (dropped counters are persistent)."""

    queued: int
    queued_bytes: int
    dropped: int
    dropped_bytes: int
    oldest_age_s: float


class Outbox:
    """A durable, capped FIFO of MQTT messages in one SQLite file (see the module docstring)."""

    def __init__(self, path: Path, max_bytes: int = 64 << 20,
                 max_age_s: float = 7 * 86400) -> None:
        if max_bytes <= 0 or max_age_s <= 0:
            raise OutboxError(f"outbox caps must be > 0 (max_bytes={max_bytes}, "
                              f"max_age_s={max_age_s})")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.max_age_s = float(max_age_s)
        self._lock = threading.RLock()  # re-entrant: a build() may call stats()
        self._db = _open(self.path)
        self.incarnation: str = self._db.execute(
            "SELECT value FROM identity WHERE name = 'incarnation'").fetchone()[0]
        """This file's random id: new whenever the file (and so every seq counter) is new."""
        self._load_totals()

    # -- writing ---------------------------------------------------------------------------

    def put(self, kind: str, topic: str, build: Callable[[int], bytes],
            retain: bool = False,
            also: Callable[[sqlite3.Connection, bytes], None] | None = None) -> int:
        """Allocate the next seq of ``kind``, store ``build(seq)`` durably, apply the caps.

        Returns the seq. Raises OutboxError (and stores nothing, consumes no seq) when
        the payload is not bytes or is larger than ``max_bytes``; exceptions from
        ``build`` propagate, likewise with nothing stored. ``build`` runs inside the write
        transaction, holding the outbox: keep it quick (gather slow figures before).
        ``also(db, payload)``, when given, runs in the same transaction (the command
        journal records a command's result there, so the result and "answered" are one
        atomic step).
        """
        with self._lock, self._transaction():
            if not isinstance(topic, str) or not topic:
                raise OutboxError(f"{kind} topic must be a non-empty string, got {topic!r}")
            seq = self._next_seq(kind)
            payload = build(seq)
            self._check_payload(kind, payload)
            if also is not None:
                also(self._db, payload)
            self._insert(kind, seq, topic, payload, retain)
        return seq

    def allocate_seq(self, kind: str) -> int:
        """Durably allocate the next seq of ``kind`` without storing a message."""
        return self.allocate_seq_block(kind, 1)

    def allocate_seq_block(self, kind: str, size: int) -> int:
        """Durably reserve ``size`` consecutive seqs of ``kind``; returns the first."""
        with self._lock, self._transaction():
            first = self._next_seq(kind)
            if size > 1:
                self._db.execute("UPDATE seqs SET last = ? WHERE kind = ?",
                                 (first + size - 1, kind))
            return first

    def put_stored(self, kind: str, topic: str, payload: bytes) -> None:
        """Queue a payload that already carries its seq (a stored result sent again)."""
        with self._lock, self._transaction():
            self._check_payload(kind, payload)
            self._insert(kind, 0, topic, bytes(payload), False)

    def run(self, work: Callable[[sqlite3.Connection], object]) -> object:
        """Run ``work(db)`` in one write transaction of this file (for the command journal)."""
        with self._lock, self._transaction():
            return work(self._db)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of a read-only query on this file."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def ack(self, row_id: int) -> None:
        """The broker acknowledged row ``row_id``: delete it (no-op if already gone)."""
        self.ack_many((row_id,))

    def ack_many(self, row_ids: Iterable[int]) -> None:
        """Delete several acknowledged rows in one transaction (idempotent)."""
        ids = [(int(i),) for i in row_ids]
        if not ids:
            return
        with self._lock, self._transaction():
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS acked (id INTEGER PRIMARY KEY)")
            self._db.executemany("INSERT OR IGNORE INTO acked VALUES (?)", ids)
            count, size = self._db.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages "
                "WHERE id IN (SELECT id FROM acked)").fetchone()
            self._db.execute("DELETE FROM messages WHERE id IN (SELECT id FROM acked)")
            self._db.execute("DELETE FROM acked")
            self._queued -= count
            self._bytes -= size

    # -- reading ---------------------------------------------------------------------------

    def pending(self, limit: int, after_id: int = 0) -> list[OutboxRow]:
        """Up to ``limit`` stored messages with ``id > after_id``, oldest first."""
        with self._lock:
            self._expire_now()
            rows = self._db.execute(
                "SELECT id, kind, topic, payload, retain, created FROM messages "
                "WHERE id > ? ORDER BY id LIMIT ?", (int(after_id), int(limit))).fetchall()
        return [OutboxRow(i, k, t, bytes(p), bool(r), c) for i, k, t, p, r, c in rows]

    def stats(self) -> OutboxStats:
        """Queued and dropped counts and bytes, and the age of the oldest queued message."""
        with self._lock:
            dropped, dropped_bytes = self._counters()
            oldest = self._db.execute("SELECT min(created) FROM messages").fetchone()[0]
            return OutboxStats(queued=self._queued, queued_bytes=self._bytes, dropped=dropped,
                               dropped_bytes=dropped_bytes,
                               oldest_age_s=max(0.0, time.time() - oldest) if oldest else 0.0)

    def close(self) -> None:
        """Close the file; later calls raise OutboxError."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = _Closed(self.path)

    # -- internals -------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _load_totals(self) -> None:
        self._queued, self._bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages").fetchone()

    def _insert(self, kind: str, seq: int, topic: str, payload: bytes, retain: bool) -> None:
        """Store one checked message and apply the caps (inside the caller's transaction)."""
        now = time.time()
        self._db.execute(
            "INSERT INTO messages (kind, seq, topic, payload, retain, created) "
            "VALUES (?, ?, ?, ?, ?, ?)", (kind, seq, topic, payload, int(retain), now))
        self._queued += 1
        self._bytes += len(payload)
        self._expire(now)
        self._enforce_size()

    def _next_seq(self, kind: str) -> int:
        if not isinstance(kind, str) or not kind:
            raise OutboxError(f"message kind must be a non-empty string, got {kind!r}")
        row = self._db.execute("SELECT last FROM seqs WHERE kind = ?", (kind,)).fetchone()
        seq = (row[0] if row else 0) + 1
        self._db.execute("INSERT OR REPLACE INTO seqs (kind, last) VALUES (?, ?)", (kind, seq))
        return seq

    def _check_payload(self, kind: str, payload: object) -> None:
        if not isinstance(payload, (bytes, bytearray)):
            raise OutboxError(f"{kind} payload must be bytes, got {type(payload).__name__}")
        if len(payload) > self.max_bytes:
            raise OutboxError(f"{kind} message of {len(payload)} bytes is larger than the whole "
                              f"outbox ({self.max_bytes} bytes); make it smaller or raise "
                              "the outbox size")

    def _expire_now(self) -> None:
        """Apply the age cap outside put (own transaction, only when something expired)."""
        cutoff = time.time() - self.max_age_s
        if self._db.execute("SELECT 1 FROM messages WHERE created < ? LIMIT 1",
                            (cutoff,)).fetchone():
            with self._transaction():
                self._expire(time.time())

    def _expire(self, now: float) -> None:
        count, size = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages "
            "WHERE created < ?", (now - self.max_age_s,)).fetchone()
        if count:
            self._db.execute("DELETE FROM messages WHERE created < ?", (now - self.max_age_s,))
            self._count_dropped(count, size)

    def _enforce_size(self) -> None:
        """Delete the oldest messages until the queued bytes fit ``max_bytes``."""
        while self._bytes > self.max_bytes:
            excess = self._bytes - self.max_bytes
            rows = self._db.execute(
                "SELECT id, length(payload) FROM messages ORDER BY id LIMIT 256").fetchall()
            if not rows:  # the totals drifted from the file; trust the file
                self._load_totals()
                return
            last_id, count, size = _oldest_covering(rows, excess)
            self._db.execute("DELETE FROM messages WHERE id <= ?", (last_id,))
            self._count_dropped(count, size)

    def _count_dropped(self, count: int, size: int) -> None:
        self._db.executemany("UPDATE counters SET value = value + ? WHERE name = ?",
                             ((count, "dropped"), (size, "dropped_bytes")))
        self._queued -= count
        self._bytes -= size

    def _counters(self) -> tuple[int, int]:
        values = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return values["dropped"], values["dropped_bytes"]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT; on any exception ROLLBACK, resync the totals, re-raise.

    SQLite errors (disk full, I/O error) come out as one-line OutboxErrors.
    """

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def __enter__(self) -> None:
        self.outbox._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> bool:
        db = self.outbox._db
        try:
            if exc_type is None:
                db.execute("COMMIT")
                return False
        except sqlite3.Error as commit_error:
            exc = commit_error
        if db.in_transaction:
            db.execute("ROLLBACK")
        self.outbox._load_totals()
        if isinstance(exc, sqlite3.Error):
            raise OutboxError(f"outbox {self.outbox.path}: {exc}") from exc
        return False


class _Closed:
    """Stands in for the connection after close(), so every use says so in one line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    in_transaction = False

    def execute(self, *args: object) -> None:
        """Always refuses: the outbox is closed."""
        raise OutboxError(f"outbox {self.path} is closed")

    executemany = execute

    def close(self) -> None:
        """Closing twice is fine."""


def _oldest_covering(rows: list[tuple[int, int]], excess: int) -> tuple[int, int, int]:
    """(last id, count, bytes) of the shortest prefix of ``rows`` holding ``excess`` bytes."""
    last_id, count, size = 0, 0, 0
    for row_id, length in rows:
        last_id, count, size = row_id, count + 1, size + length
        if size >= excess:
            break
    return last_id, count, size


def _open(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the outbox file with WAL + synchronous=FULL."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                             timeout=10.0)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise OutboxError(f"outbox {path}: the file system does not support SQLite WAL "
                              f"(journal mode is {mode}); put the outbox on a local disk")
        db.execute("PRAGMA synchronous=FULL")
        _migrate(db, path)
        return db
    except sqlite3.DatabaseError as exc:
        raise OutboxError(f"outbox {path} cannot be opened ({exc}); move the file away "
                          "to start an empty outbox") from exc
    except OSError as exc:
        raise OutboxError(f"outbox {path} cannot be created: {exc.strerror or exc}") from exc


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION and version not in _SAME_LAYOUT_AS_CURRENT:
        raise OutboxError(f"outbox {path} has schema version {version}, newer than this "
                          f"agent's {SCHEMA_VERSION}; upgrade the agent")
    db.executescript(_SCHEMA)
    db.execute("INSERT OR IGNORE INTO identity VALUES ('incarnation', ?)",
               (secrets.token_hex(INCARNATION_BYTES),))
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
