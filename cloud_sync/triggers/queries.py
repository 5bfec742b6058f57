"""Reads for the API and the CLI: drift scores, triggers with their actions and attempts.

Documents are plain JSON; secrets in action configs, and the passwords of URLs in them
and in the actions' errors, are redacted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.store.schema import action_attempts, actions, drift_scores, triggers
from cloud_sync.triggers.fire import redact


@dataclass(frozen=True)
class ScoreFilter:
    """Which drift scores to list (None: any)."""

    fleet: str | None = None
    device: str | None = None
    scope: str | None = None
    model: str | None = None
    version: str | None = None
    kind: str | None = None
    start: float | None = None
    end: float | None = None
    limit: int = 1000


def drift_page(conn: Connection, f: ScoreFilter) -> list[dict[str, Any]]:
    """Scores matching ``f``, newest windows first (at most ``limit``)."""
    c = drift_scores.c
    query = sa.select(drift_scores)
    for column, value in ((c.fleet, f.fleet), (c.device_id, f.device), (c.scope, f.scope),
                          (c.model_name, f.model), (c.model_version, f.version),
                          (c.kind, f.kind)):
        if value is not None:
            query = query.where(column == value)
    if f.start is not None:
        query = query.where(c.window_end > f.start)
    if f.end is not None:
        query = query.where(c.window_start < f.end)
    query = query.order_by(c.window_start.desc(), c.scope_key, c.kind).limit(f.limit)
    return [_score_doc(row) for row in conn.execute(query).mappings()]


def _score_doc(row: Any) -> dict[str, Any]:
    doc = {k: v for k, v in row.items() if k not in ("id", "model_name", "model_version")}
    return {"model": row["model_name"], "version": row["model_version"], **doc}


def trigger_doc(row: Any, with_evidence: bool = True) -> dict[str, Any]:
    """A ``triggers`` row as the API shows it (and as actions send it)."""
    evidence = row["evidence"] or {}
    doc = {"id": row["id"], "fleet": row["fleet"], "model": row["model_name"],
           "version": row["model_version"], "dedupe_key": row["dedupe_key"],
           "fired_at": row["fired_at"], "window_end": row["window_end"],
           "reason": evidence.get("reason", ""),
           "devices_affected": evidence.get("devices_affected", []),
           "samples_export": row["samples_export"], "samples_count": row["samples_count"],
           "evidence_file": evidence.get("evidence_file")}
    if with_evidence:
        doc.update(policy=row["policy"], evidence=evidence)
    return doc


def list_triggers(conn: Connection, fleet: str | None = None, limit: int = 100
                  ) -> list[dict[str, Any]]:
    """Triggers newest first, each with its actions (no evidence: see ``get_trigger``)."""
    query = sa.select(triggers).order_by(triggers.c.fired_at.desc(), triggers.c.id.desc())
    if fleet is not None:
        query = query.where(triggers.c.fleet == fleet)
    rows = conn.execute(query.limit(limit)).mappings().all()
    found = _actions_of(conn, [r["id"] for r in rows])
    return [{**trigger_doc(r, with_evidence=False), "actions": found.get(r["id"], [])}
            for r in rows]


def get_trigger(conn: Connection, trigger_id: int) -> dict[str, Any] | None:
    """One trigger with its evidence, actions and every attempt; None if unknown."""
    row = conn.execute(sa.select(triggers).where(triggers.c.id == trigger_id)).mappings().first()
    if row is None:
        return None
    return {**trigger_doc(row), "actions": _actions_of(conn, [trigger_id]).get(trigger_id, [])}


def _actions_of(conn: Connection, trigger_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    if not trigger_ids:
        return {}
    rows = conn.execute(sa.select(actions).where(actions.c.trigger_id.in_(trigger_ids))
                        .order_by(actions.c.trigger_id, actions.c.idx)).mappings().all()
    tries: dict[int, list[dict[str, Any]]] = {}
    for t in conn.execute(sa.select(action_attempts).where(
            action_attempts.c.action_id.in_([r["id"] for r in rows]))
            .order_by(action_attempts.c.attempt)).mappings():
        tries.setdefault(t["action_id"], []).append(
            redact({k: t[k] for k in ("attempt", "started_at", "finished_at", "ok", "error")}))
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["trigger_id"], []).append({
            "index": r["idx"], "kind": r["kind"], "state": r["state"],
            "attempts": r["attempts"], "max_attempts": r["max_attempts"],
            "next_attempt_at": r["next_attempt_at"], "last_error": redact(r["last_error"]),
            "config": redact(r["config"]), "history": tries.get(r["id"], [])})
    return out
