"""Per-device progress of a rollout: reading cmd/result rows into device states, sending
updates (offline policy) and rollbacks. Each change is a row update in the caller's
transaction; the commands to publish are returned, never sent from here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.rollouts.commands import Outgoing, cmd_id, due, rollback_doc, update_doc
from cloud_sync.rollouts.policy import RolloutPolicy
from cloud_sync.store.chunks import rows_in_chunks
from cloud_sync.store.schema import devices, messages, rollout_devices

FINISHED = ("committed", "failed", "rolled_back")
FAILED = ("failed", "rolled_back")
SETTLED = (*FINISHED, "skipped")
TOOK = ("probation", "committed")  # devices running the new version
REACHABLE = ("online", "degraded", "updating")
ANSWERING = ("sent", "probation")  # devices whose update results ``collect`` reads


@dataclass
class Step:
    """What one controller step has in hand: connection, time, artifacts, commands."""

    conn: Connection
    now: float
    artifact_url: Any  # (sha256, ttl_s, sent_at) -> signed URL
    outgoing: list[Outgoing] = field(default_factory=list)


def _payload(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else (value or {})


Found = dict[tuple[str, str], list[dict]]  # (device id, cmd_id) -> its results, oldest first


def results(conn: Connection, device_ids: list[str], since: float) -> Found:
    """cmd/result payloads of these devices since ``since``, by (device id, cmd_id).

    The device id is the row's, i.e. the topic's (ingest refuses a payload whose
    ``device_id`` differs, and the broker lets a device write only its own topics), so a
    result counts only for the device the command was sent to: cmd_ids are computable
    from public information, and another device answering one changes nothing."""
    if not device_ids:
        return {}
    m = messages.c
    out: Found = {}
    for row in rows_in_chunks(conn, device_ids, lambda ids: sa.select(m.device_id, m.payload)
                              .where(m.kind == "cmd/result", m.device_id.in_(ids),
                                     m.received_at >= since).order_by(m.ts, m.seq)):
        doc = _payload(row.payload)
        out.setdefault((row.device_id, str(doc.get("cmd_id"))), []).append(doc)
    return out


def _set(step: Step, row: Any, **values: Any) -> None:
    step.conn.execute(sa.update(rollout_devices).where(rollout_devices.c.id == row.id)
                      .values(updated_at=step.now, **values))


def _update_state(answers: list[dict]) -> str | None:
    state = None
    for doc in answers:
        phase = (doc.get("detail") or {}).get("phase")
        if not doc.get("ok"):
            return "rolled_back" if phase == "rolled_back" else "failed"
        state = "committed" if phase == "committed" else "probation"
    return state


def collect(step: Step, rows: list[Any], found: Found) -> None:
    """Move sent/probation devices on by their update results; past the deadline: failed."""
    for row in rows:
        if row.state not in ANSWERING:
            continue
        answers = found.get((row.device_id, row.cmd_id), [])
        state = _update_state(answers)
        if state and state != row.state:
            _set(step, row, state=state, result=answers[-1])
        elif state != "committed" and row.deadline is not None and step.now > row.deadline:
            _set(step, row, state="failed",
                 result={"error": "no final result before the device timeout"})


def _device_info(conn: Connection, ids: list[str]) -> dict[str, Any]:
    return {r.id: r for r in rows_in_chunks(
        conn, ids, lambda chunk: sa.select(devices).where(devices.c.id.in_(chunk)))}


def send_updates(step: Step, r: Any, rows: list[Any], policy: RolloutPolicy,
                 bundles: dict[str, Any]) -> None:
    """Send the update to pending devices that are reachable; the offline policy for the
    rest; resend unanswered ones (same cmd_id)."""
    info = _device_info(step.conn, [row.device_id for row in rows])
    for row in rows:
        dev = info.get(row.device_id)
        if row.state == "sent" and row.sent_at is not None and due(row.cmd_id, step.now):
            step.outgoing.append(_update(step, r, row, dev, bundles, policy, row.sent_at))
        if row.state != "pending" or dev is None:
            continue
        bundle = bundles.get(dev.profile)
        if bundle is None:
            _set(step, row, state="failed", result={"error": f"no bundle for {dev.profile}"})
        elif dev.state in REACHABLE:
            _set(step, row, state="sent", sent_at=step.now,
                 deadline=step.now + policy.device_timeout_s)
            step.outgoing.append(_update(step, r, row, dev, bundles, policy, step.now))
        elif policy.offline != "wait":
            state = "skipped" if policy.offline == "skip" else "failed"
            _set(step, row, state=state, result={"error": f"device {dev.state} at send time"})
        elif step.now - r.phase_started_at > policy.offline_wait_s:
            _set(step, row, state="failed", result={
                "error": f"offline for over {policy.offline_wait_s:g} s"})


def _update(step: Step, r: Any, row: Any, dev: Any, bundles: dict[str, Any],
            policy: RolloutPolicy, sent_at: float) -> Outgoing:
    b = bundles[dev.profile]
    url = step.artifact_url(b.sha256, policy.command_ttl_s, sent_at)
    return Outgoing(dev.fleet, row.device_id, update_doc(
        row.cmd_id, url, b.sha256, r.model_version, b.size, sent_at, policy.command_ttl_s))


def _left(answer: dict[str, Any], version: str) -> bool:
    """The device is off ``version``: it rolled back, or it refused the rollback because
    it no longer runs that version (its probation rolled it back meanwhile)."""
    if answer.get("ok"):
        return True
    running = (answer.get("detail") or {}).get("running_version")
    return running is not None and running != version


def roll_back(step: Step, r: Any, rows: list[Any], policy: RolloutPolicy,
              found: Found) -> None:
    """Rollback to every device on the new version; confirm each through its cmd/result."""
    info = _device_info(step.conn, [row.device_id for row in rows])
    for row in rows:
        rb = cmd_id(r.id, row.device_id, "rb")
        fleet = info[row.device_id].fleet if row.device_id in info else r.fleet
        if row.state in TOOK:
            _set(step, row, state="rollback_sent", sent_at=step.now,
                 deadline=step.now + policy.device_timeout_s)
            step.outgoing.append(Outgoing(fleet, row.device_id, rollback_doc(
                rb, step.now, policy.command_ttl_s, r.model_version)))
        elif row.state == "rollback_sent":
            answers = found.get((row.device_id, rb), [])
            if answers:
                state = "rollback_confirmed" if _left(answers[-1], r.model_version) \
                    else "rollback_failed"
                _set(step, row, state=state, result=answers[-1])
            elif step.now > (row.deadline or step.now):
                _set(step, row, state="rollback_failed", result={"error": "no answer"})
            elif due(rb, step.now):
                step.outgoing.append(Outgoing(fleet, row.device_id, rollback_doc(
                    rb, row.sent_at, policy.command_ttl_s, r.model_version)))
