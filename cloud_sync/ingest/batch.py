"""Write one batch of judged messages in the caller's transaction: rows, gaps, registry,
quarantine and counters, each in one statement (or a few) for the whole batch.

Order matters across workers on PostgreSQL: every batch takes its row locks in the
same order (devices, seq heads, counters), each sorted by key, so concurrent batches
wait for each other but never deadlock.

Incarnations (protocol 1.2): a device's seqs are unique per outbox incarnation, so rows,
duplicates and gaps are keyed by (device, incarnation, kind, seq). The device's row
follows its newest incarnation: a status of an incarnation that never had a status
applied (a re-imaged device, a lost outbox: its seqs start at 1 again) is applied
whatever its seq, and the row's ``incarnation`` becomes that one; from then on only
its statuses count, ordered by seq, so a late status of an older incarnation (the last
will of the connection before the re-image) changes nothing. Only statuses switch: a
stray message of some other incarnation (a forged result, say) is stored under its
own incarnation and leaves the row alone. This is decided with the device rows locked
first, so two workers never decide it differently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.config import CloudConfig
from cloud_sync.ingest import gaps
from cloud_sync.ingest.classify import FLEET_MISMATCH, UNKNOWN_DEVICE, Accepted, Rejected
from cloud_sync.registry import Sighting, record_seen, record_status
from cloud_sync.registry.devices import set_incarnations
from cloud_sync.store import arrays, bump_counters, insert_messages, insert_samples, windows
from cloud_sync.store.rows import JsonDoc, message_row, sample_row
from cloud_sync.store.schema import devices, messages, quarantine
from cloud_sync.store.unknown_fields import cap_unknown_fields
from cloud_sync.store.writes import insert_new_messages
from edge_agent import protocol

REVIVED_STATES = ("stale", "offline")  # a non-status message ends these (see serve/jobs.py)


@dataclass
class BatchResult:
    """What one batch did: counter deltas (also written to ``ingest_stats``)."""

    counts: Counter = field(default_factory=Counter)

    @property
    def stored(self) -> int:
        """New rows stored (messages + samples)."""
        return sum(v for k, v in self.counts.items() if k.startswith("accepted:"))


def write_batch(conn: Connection, items: Sequence[Accepted | Rejected], cfg: CloudConfig,
                now: float, writer: str = "") -> BatchResult:
    """Store the batch's valid messages idempotently and quarantine the rest (bounded);
    ``writer`` (the worker's client id) names its part of the fleet windows."""
    settings = cfg.ingest
    result = BatchResult()
    accepted = [i for i in items if isinstance(i, Accepted)]
    rejected = [i for i in items if isinstance(i, Rejected)]
    accepted, refused = _check_registration(conn, accepted, settings.registration_open)
    rejected += refused
    followed = _lock_devices(conn, accepted, now)
    _store_rows(conn, accepted, result.counts, _Writing(cfg, now, writer))
    _track_gaps(conn, accepted, result.counts, now)
    _update_registry(conn, accepted, followed, now)
    if rejected:
        _quarantine(conn, rejected, settings.quarantine_payload_bytes, now, result.counts)
        cap_quarantine(conn, cfg.retention.quarantine_max_rows)
    result.counts.update(cap_unknown_fields(  # top N + other: devices may invent keys
        conn, [(a.kind, path) for a in accepted for path in a.unknown_fields],
        cfg.retention.unknown_field_counters))
    bump_counters(conn, result.counts, now)
    return result


def _check_registration(conn: Connection, accepted: list[Accepted], open_: bool
                        ) -> tuple[list[Accepted], list[Rejected]]:
    ids = sorted({a.device_id for a in accepted})
    if not ids:
        return accepted, []
    known = FLEET_READERS.get(conn.dialect.name, _fleets_of)(conn, ids)
    keep, refused = [], []
    for a in accepted:
        fleet = known.get(a.device_id)
        if fleet is None and not open_:
            refused.append(Rejected(a.received, UNKNOWN_DEVICE, "registration is closed; "
                                    "'edgekit cloud device add' it", a.device_id))
        elif fleet is not None and fleet != a.fleet:
            refused.append(Rejected(a.received, FLEET_MISMATCH, f"registered in fleet "
                                    f"{fleet!r}, sent on {a.fleet!r}", a.device_id))
        else:
            keep.append(a)
    return keep, refused


def _fleets_of(conn: Connection, ids: list[str]) -> dict[str, str]:
    return dict(conn.execute(sa.select(devices.c.id, devices.c.fleet)
                             .where(devices.c.id.in_(ids))).all())


def _in_states(conn: Connection, ids: list[str], states: Sequence[str]) -> list[str]:
    return list(conn.execute(sa.select(devices.c.id).where(
        devices.c.id.in_(ids), devices.c.state.in_(states))).scalars())


# PostgreSQL takes the batch's ids as one array (store/arrays.py); others an IN list
FLEET_READERS: dict[str, Callable[[Connection, list[str]], dict[str, str]]] = {
    "postgresql": arrays.fleets_of}
STATE_READERS: dict[str, Callable[[Connection, list[str], Sequence[str]], list[str]]] = {
    "postgresql": arrays.in_states}


@dataclass(frozen=True)
class _Writing:
    """What the row writers need besides the rows: the config, the batch's time and the
    writer's name."""

    cfg: CloudConfig
    now: float
    writer: str = ""


def _store_rows(conn: Connection, accepted: list[Accepted], counts: Counter,
                writing: _Writing) -> None:
    """Insert per kind (one statement each), so accepted and duplicate counts are exact."""
    unique = {(a.device_id, a.message.incarnation, a.kind, a.seq): a for a in accepted}
    counts["duplicate"] += len(accepted) - len(unique)
    by_kind: dict[str, list[Accepted]] = {}
    for key in sorted(unique):
        by_kind.setdefault(key[2], []).append(unique[key])
    for kind, group in sorted(by_kind.items()):
        new = ROW_WRITERS[kind](conn, group, writing)
        counts[f"accepted:{kind}"] += new
        counts["duplicate"] += len(group) - new
    _drop_zero(counts)


def _message_rows(group: list[Accepted]) -> list[dict]:
    return [message_row(a.fleet, a.kind, a.message, a.received.received_at,
                        JsonDoc(a.doc, a.received.payload.decode())) for a in group]


def _insert_message_rows(conn: Connection, group: list[Accepted], writing: _Writing) -> int:
    return insert_messages(conn, _message_rows(group))


def _insert_telemetry_rows(conn: Connection, group: list[Accepted], writing: _Writing) -> int:
    """Telemetry rows, and the new ones (not a redelivery) added to their device windows."""
    new = set(insert_new_messages(conn, _message_rows(group)))
    fresh = [(a.fleet, a.message) for a in group
             if (a.device_id, a.message.incarnation, a.kind, a.seq) in new]
    triggers = writing.cfg.triggers
    sizes = {f: triggers.policy_for(f).window_s for f in {fleet for fleet, _ in fresh}}
    windows.add(conn, sizes.__getitem__, fresh, writing.now, writing.writer)
    return len(new)


def _insert_sample_rows(conn: Connection, group: list[Accepted], writing: _Writing) -> int:
    return insert_samples(conn, [sample_row(a.fleet, a.message, a.received.received_at)
                                 for a in group])


ROW_WRITERS = {protocol.TELEMETRY: _insert_telemetry_rows,
               protocol.STATUS: _insert_message_rows,
               protocol.CMD_RESULT: _insert_message_rows, protocol.SAMPLES: _insert_sample_rows}


def _drop_zero(counts: Counter) -> None:
    for key in [k for k, v in counts.items() if v == 0]:
        del counts[key]


def _track_gaps(conn: Connection, accepted: list[Accepted], counts: Counter,
                now: float) -> None:
    seqs: dict[gaps.Key, list[int]] = {}
    for a in accepted:
        if a.kind != protocol.STATUS:
            seqs.setdefault((a.device_id, a.message.incarnation, a.kind), []).append(a.seq)
    report = gaps.track(conn, seqs, now)
    for kind, n in report.missing.items():
        counts[f"gap_missing:{kind}"] += n
    for kind, n in report.filled.items():
        counts[f"gap_filled:{kind}"] += n


def _lock_devices(conn: Connection, accepted: list[Accepted], now: float) -> dict[str, str]:
    """Auto-register the batch's devices and widen their seen times, which locks their
    rows first (see the module docstring); ``device -> incarnation`` their rows follow."""
    if not accepted:
        return {}
    seen = sorted({(a.device_id, a.fleet) for a in accepted})
    return record_seen(conn, [Sighting(d, f, now) for d, f in seen])


def _update_registry(conn: Connection, accepted: list[Accepted], followed: dict[str, str],
                     now: float) -> None:
    """Apply each device's newest status (``_statuses_to_apply``), raise its head and
    follow its incarnation."""
    if not accepted:
        return
    apply = _statuses_to_apply(conn, accepted, followed)
    gaps.write_heads(conn, {(d, a.message.incarnation, protocol.STATUS): a.seq
                            for d, a in apply.items()}, now)
    set_incarnations(conn, {d: a.message.incarnation for d, a in apply.items()
                            if a.message.incarnation != followed[d]})
    _revive(conn, [a for a in accepted if a.kind != protocol.STATUS and a.device_id not in apply])
    for device_id in sorted(apply):
        _apply_status(conn, apply[device_id].message)


def _statuses_to_apply(conn: Connection, accepted: list[Accepted], followed: dict[str, str]
                       ) -> dict[str, Accepted]:
    """Per device, the status to apply: the newest of an incarnation that never had one
    applied (the last received, if several), else the followed incarnation's newest
    when its seq is above that incarnation's head."""
    newest: dict[tuple[str, str], Accepted] = {}
    for a in accepted:
        key = (a.device_id, a.message.incarnation)
        if a.kind == protocol.STATUS and (key not in newest or a.seq > newest[key].seq):
            newest[key] = a
    heads = gaps.read_heads(conn, [(d, i, protocol.STATUS) for d, i in newest])
    best: dict[str, tuple[tuple, Accepted]] = {}
    for (device_id, incarnation), a in newest.items():
        head = heads.get((device_id, incarnation, protocol.STATUS))
        fresh = incarnation != followed[device_id] and head is None
        if fresh or (incarnation == followed[device_id] and (head is None or a.seq > head)):
            rank = (fresh, a.received.received_at, a.message.ts)
            if device_id not in best or rank > best[device_id][0]:
                best[device_id] = (rank, a)
    return {device_id: a for device_id, (_rank, a) in best.items()}


def _revive(conn: Connection, heard: list[Accepted]) -> None:
    """Bring ``stale``/``offline`` devices back ``online`` when a message of theirs was
    received after their last status (cloud receive times: a message sent before a last
    will but written after it revives nothing)."""
    latest: dict[str, float] = {}
    for a in heard:
        latest[a.device_id] = max(latest.get(a.device_id, 0.0), a.received.received_at)
    if not latest:
        return
    silent = STATE_READERS.get(conn.dialect.name, _in_states)(conn, sorted(latest),
                                                              REVIVED_STATES)
    if not silent:
        return
    last_status = dict(conn.execute(
        sa.select(messages.c.device_id, sa.func.max(messages.c.received_at))
        .where(messages.c.device_id.in_(silent), messages.c.kind == protocol.STATUS)
        .group_by(messages.c.device_id)).all())
    revive = sorted(d for d in silent if latest[d] > last_status.get(d, 0.0))
    if revive:
        conn.execute(sa.update(devices).where(devices.c.id.in_(revive)).values(state="online"))


def _apply_status(conn: Connection, status: protocol.Status) -> None:
    model = status.model
    record_status(conn, status.device_id, status.state,
                  model_name=model.name if model else None,
                  model_version=model.version if model else None,
                  agent_version=status.agent_version or None,
                  profile=status.profile or None)


def _quarantine(conn: Connection, rejected: list[Rejected], cap: int, now: float,
                counts: Counter) -> None:
    conn.execute(sa.insert(quarantine), [
        {"received_at": r.received.received_at, "topic": r.received.topic[:256],
         "device_id": r.device_id, "reason": r.reason, "detail": r.detail[:256],
         "payload": r.received.payload[:cap], "payload_size": len(r.received.payload)}
        for r in rejected])
    for r in rejected:
        counts[f"quarantined:{r.reason}"] += 1


def cap_quarantine(conn: Connection, max_rows: int) -> int:
    """Delete the oldest quarantine rows beyond ``max_rows``; returns how many."""
    newest_dropped = (sa.select(quarantine.c.id).order_by(quarantine.c.id.desc())
                      .offset(max_rows).limit(1).scalar_subquery())
    return conn.execute(sa.delete(quarantine).where(quarantine.c.id <= newest_dropped)).rowcount
