"""Retention: delete history past its age, over its row count or over its device's cap.

What is bounded is data, not code: ``AGE_RULES`` (a table's time column and the config
field holding its age), ``COUNT_RULES`` (a whole table's row cap), ``DEVICE_CAPS`` (a
cap per device for each message kind) and ``TREE_RULES`` (parents that are old and
finished, deleted after their children: triggers with their actions and attempts,
finished rollouts with their devices and events). Besides the tables, a pass folds the
unknown-field counters to the top N (``unknown_fields``) and prunes the samples exports
folder (``samples_export.prune_exports``).

On PostgreSQL, ``messages`` is partitioned by day of ``ts``: a pass first makes the
next days' partitions and drops the days wholly past ``telemetry_max_age_s``
(``partitions.maintain``); the batched deletes then find only what is left (rows in the
default partition, a day's rows received late).

Every delete runs in batches, each its own short write transaction (``Batches``):
SQLite has one writer, and ingest waits while a delete holds the lock. A batch is one
statement, ``DELETE ... WHERE key IN (SELECT key ... ORDER BY ... LIMIT size)``, so its
rows are chosen inside the write transaction, and the time a batch holds the lock
includes finding them. A batch that took longer than ``delete_batch_target_s`` (by the
``Batches`` clock) halves the next; one under a quarter of it doubles the next (from a
quarter of ``delete_batch_rows`` up to all of it). Read before the deletes, outside the
write lock, is only how far they go: a count rule's newest row to drop, the per-device
counts and each candidate's cap-th newest row.

Sequence heads (``seq_heads``, a row per device, incarnation and kind) go once older
than the gaps' age (``updated_at`` before now minus ``gaps_max_age_s``) and not of the
incarnation their device's registry row follows (``devices.incarnation``): a lost
outbox or a re-imaged device leaves its old heads behind, and they would pile up.

Per-device caps without counting every device each pass: a pass counts only the rows
received since the previous pass (``MARGIN_S`` of overlap). A (device, kind) that got
more than its cap's share of that span (cap x span / age) is a candidate, and so is one
trimmed within the last age; a candidate gets the exact check, its cap-th newest row by
``ts`` through the (device_id, kind, ts) index. A (device, kind) that was never a
candidate got at most its share in every span, so at most its cap within the age. The
first pass of a ``RetentionJob`` counts every row once, and so does the first after
``reset()``, which ``serve`` calls whenever this process (re)gains leadership: another
instance may have led (and trimmed) in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from cloud_sync import samples_export  # a module: it imports the store's schema in turn
from cloud_sync.config import Retention
from cloud_sync.rollouts.states import TERMINAL
from cloud_sync.store import partitions
from cloud_sync.store.engine import transaction
from cloud_sync.store.schema import (
    action_attempts,
    actions,
    devices,
    drift_scores,
    fleet_windows,
    messages,
    quarantine,
    rollout_devices,
    rollout_events,
    rollouts,
    samples,
    seq_gaps,
    seq_heads,
    telemetry_windows,
    triggers,
)
from cloud_sync.store.unknown_fields import fold_unknown_fields

MARGIN_S = 60.0  # overlap of consecutive count spans: a row committed late is still counted
MIN_BATCH = 10
OPEN_ACTIONS = ("pending", "running")
Clock = Callable[[], float]


@dataclass(frozen=True)
class AgeRule:
    """Rows of ``table`` whose ``time_column`` is older than the ``max_age_field`` go,
    except those matching ``keep`` (when given)."""

    table: sa.Table
    time_column: str
    max_age_field: str
    keep: ColumnElement | None = None


@dataclass(frozen=True)
class TreeRule:
    """Parents matching ``old(cutoff)`` go, after their ``children`` (deepest first, each
    a condition on the old parents' ids); the cutoff is now minus ``max_age_field``."""

    parent: sa.Table
    max_age_field: str
    old: Callable[[float], ColumnElement]
    children: tuple[tuple[sa.Table, Callable[[sa.Select], ColumnElement]], ...]


_FOLLOWED_HEAD = sa.select(devices.c.id).where(
    devices.c.id == seq_heads.c.device_id,
    devices.c.incarnation == seq_heads.c.incarnation).exists()  # the registry row's

AGE_RULES = (
    AgeRule(messages, "received_at", "telemetry_max_age_s"),
    AgeRule(samples, "received_at", "samples_max_age_s"),
    AgeRule(quarantine, "received_at", "quarantine_max_age_s"),
    AgeRule(seq_gaps, "detected_at", "gaps_max_age_s"),
    AgeRule(seq_heads, "updated_at", "gaps_max_age_s", keep=_FOLLOWED_HEAD),
    AgeRule(drift_scores, "window_end", "drift_scores_max_age_s"),
    AgeRule(telemetry_windows, "window_start", "telemetry_max_age_s"),  # ingest's sums
    AgeRule(fleet_windows, "window_start", "telemetry_max_age_s"),
)
COUNT_RULES = ((samples, "samples_max_rows"), (quarantine, "quarantine_max_rows"),
               (seq_gaps, "gaps_max_rows"))
DEVICE_CAPS = {"telemetry": "telemetry_max_rows_per_device",
               "status": "status_max_rows_per_device",
               "cmd/result": "results_max_rows_per_device"}


def _old_triggers(cutoff: float) -> ColumnElement:
    still_open = sa.select(actions.c.id).where(actions.c.trigger_id == triggers.c.id,
                                               actions.c.state.in_(OPEN_ACTIONS))
    return sa.and_(triggers.c.fired_at < cutoff, ~still_open.exists())


def _old_rollouts(cutoff: float) -> ColumnElement:
    return sa.and_(rollouts.c.state.in_(TERMINAL), rollouts.c.updated_at < cutoff)


TREE_RULES = (
    TreeRule(triggers, "triggers_max_age_s", _old_triggers, (
        (action_attempts, lambda ids: action_attempts.c.action_id.in_(
            sa.select(actions.c.id).where(actions.c.trigger_id.in_(ids)))),
        (actions, lambda ids: actions.c.trigger_id.in_(ids)))),
    TreeRule(rollouts, "rollouts_max_age_s", _old_rollouts, (
        (rollout_events, lambda ids: rollout_events.c.rollout_id.in_(ids)),
        (rollout_devices, lambda ids: rollout_devices.c.rollout_id.in_(ids)))),
)


@dataclass
class Batches:
    """Deletes in short write transactions, sized to take about ``target_s`` each as
    timed by ``clock`` (seconds; a test gives a fake one)."""

    engine: Engine
    max_rows: int
    target_s: float
    size: int = 0
    longest_s: float = 0.0
    transactions: int = 0
    clock: Clock = time.perf_counter

    def __post_init__(self) -> None:  # start small: the first batch is not timed yet
        self.size = self.size or max(MIN_BATCH, self.max_rows // 4)

    def delete(self, table: sa.Table, where: list[ColumnElement],
               order: list[ColumnElement]) -> int:
        """Delete the rows of ``table`` matching ``where``, first by ``order``; returns
        how many."""
        key = list(table.primary_key.columns)
        total = 0
        while True:
            size = self.size
            chosen = sa.select(*key).where(*where).order_by(*order).limit(size)
            match = (key[0].in_(chosen.scalar_subquery()) if len(key) == 1
                     else sa.tuple_(*key).in_(chosen))
            done = self._run(sa.delete(table).where(match))
            total += done
            if done < size:
                return total

    def _run(self, statement: sa.Delete) -> int:
        start = self.clock()
        with transaction(self.engine) as conn:
            done = conn.execute(statement).rowcount
        took = self.clock() - start
        self.transactions += 1
        self.longest_s = max(self.longest_s, took)
        if took > self.target_s:
            self.size = max(MIN_BATCH, self.size // 2)
        elif took < self.target_s / 4:
            self.size = min(self.max_rows, self.size * 2)
        return done


@dataclass
class RetentionJob:
    """The retention pass the leader runs every ``Retention.interval_s``; it remembers
    when it last ran and which devices it trimmed (see the module's docstring) until
    ``reset``."""

    retention: Retention
    exports_dir: Path | None = None
    last_pass: float | None = None
    watch: dict[tuple[str, str], float] = field(default_factory=dict)
    clock: Clock = time.perf_counter  # times each delete batch

    def reset(self) -> None:
        """Forget the previous passes (another instance may have led since): the next
        pass counts every row once."""
        self.last_pass = None
        self.watch = {}

    def __call__(self, engine: Engine, now: float) -> dict[str, Any]:
        """One pass; returns rows deleted per table and how long the longest delete
        transaction took."""
        r = self.retention
        batches = Batches(engine, r.delete_batch_rows, r.delete_batch_target_s,
                          clock=self.clock)
        deleted: dict[str, Any] = {}
        days = partitions.maintain(engine, r.telemetry_max_age_s, now)  # PostgreSQL only
        _add(deleted, messages, days.rows_dropped)
        if days.created or days.dropped:
            deleted["partitions"] = {"created": days.created, "dropped": days.dropped}
        for rule in AGE_RULES:
            cutoff = now - getattr(r, rule.max_age_field)
            _add(deleted, rule.table, _delete_old(batches, rule, cutoff))
        _add(deleted, messages, self._trim_devices(engine, batches, now))
        for table, max_field in COUNT_RULES:
            _add(deleted, table, _delete_over(engine, batches, table, getattr(r, max_field)))
        for tree in TREE_RULES:
            for table, n in _delete_tree(batches, tree, now - getattr(r, tree.max_age_field)):
                _add(deleted, table, n)
        deleted["unknown_field_counters"] = fold_unknown_fields(engine, r.unknown_field_counters,
                                                                now)
        if self.exports_dir is not None:
            deleted["export_files"] = samples_export.prune_exports(
                self.exports_dir, r.exports_max_age_s, r.exports_max_bytes, now)
        deleted["longest_transaction_s"] = round(batches.longest_s, 4)
        return deleted

    def _trim_devices(self, engine: Engine, batches: Batches, now: float) -> int:
        r, m = self.retention, messages.c
        since = now - r.telemetry_max_age_s if self.last_pass is None else \
            self.last_pass - MARGIN_S
        share = min(1.0, (now - since) / r.telemetry_max_age_s)
        caps = {kind: getattr(r, name) for kind, name in DEVICE_CAPS.items()}
        with engine.connect() as conn:
            counts = conn.execute(sa.select(m.device_id, m.kind, sa.func.count())
                                  .where(m.received_at >= since)
                                  .group_by(m.device_id, m.kind)).all()
        self.watch = {key: until for key, until in self.watch.items() if until > now}
        candidates = {(d, k) for d, k, n in counts if k in caps and n > caps[k] * share}
        total = 0
        for device, kind in sorted(candidates | set(self.watch)):
            n = _trim_device(engine, batches, device, kind, caps[kind])
            if n:
                self.watch[(device, kind)] = now + r.telemetry_max_age_s
                total += n
        self.last_pass = now
        return total


def apply_retention(engine: Engine, retention: Retention, now: float,
                    exports_dir: Path | None = None) -> dict[str, Any]:
    """One retention pass of a new ``RetentionJob`` (which counts every device's rows)."""
    return RetentionJob(retention, exports_dir)(engine, now)


def _add(deleted: dict[str, Any], table: sa.Table, n: int) -> None:
    deleted[table.name] = deleted.get(table.name, 0) + n


def _delete_old(batches: Batches, rule: AgeRule, cutoff: float) -> int:
    column = rule.table.c[rule.time_column]
    where = [column < cutoff] + ([] if rule.keep is None else [~rule.keep])
    return batches.delete(rule.table, where, [column])


def _delete_over(engine: Engine, batches: Batches, table: sa.Table, max_rows: int) -> int:
    with engine.connect() as conn:
        newest_dropped = conn.execute(sa.select(table.c.id).order_by(table.c.id.desc())
                                      .offset(max_rows).limit(1)).scalar()
    if newest_dropped is None:
        return 0
    return batches.delete(table, [table.c.id <= newest_dropped], [table.c.id])


def _trim_device(engine: Engine, batches: Batches, device: str, kind: str, cap: int) -> int:
    """Delete the (device, kind)'s rows beyond its ``cap`` newest (by ts, then id)."""
    m = messages.c
    mine = [m.device_id == device, m.kind == kind]
    with engine.connect() as conn:
        edge = conn.execute(sa.select(m.ts, m.id).where(*mine).order_by(m.ts.desc(), m.id.desc())
                            .offset(cap).limit(1)).first()
    if edge is None:
        return 0
    older = sa.or_(m.ts < edge.ts, sa.and_(m.ts == edge.ts, m.id <= edge.id))
    return batches.delete(messages, [*mine, older], [m.ts, m.id])


def _delete_tree(batches: Batches, tree: TreeRule, cutoff: float
                 ) -> list[tuple[sa.Table, int]]:
    old_ids = sa.select(tree.parent.c.id).where(tree.old(cutoff))
    done = [(child, batches.delete(child, [where(old_ids)], [child.c.id]))
            for child, where in tree.children]
    done.append((tree.parent, batches.delete(tree.parent, [tree.old(cutoff)], [tree.parent.c.id])))
    return done
