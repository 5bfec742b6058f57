"""Firing a trigger: one row (its dedupe key unique), its files, its outbox actions.

The dedupe key is ``<fleet>/<model>/<version>/<cooldown bucket of the last window's
end>``; the insert is ``ON CONFLICT DO NOTHING``, so of two controllers (or a
restarted one) racing on the same windows exactly one fires. A trigger is also held
back while the (fleet, model, version)'s last trigger is younger than the cooldown.
Secrets in the policy are redacted in the stored policy (the action rows keep the
config the outbox needs).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_sync.samples_export import SampleFilter, export_samples
from cloud_sync.store.engine import redact_url
from cloud_sync.store.schema import actions, triggers
from cloud_sync.triggers.policy import TriggerPolicy
from cloud_sync.triggers.scoring import UPSERTS, GroupKey

REDACTED = "***"


def redact(doc: Any) -> Any:
    """``doc`` with every ``secret`` value replaced and the password of every URL
    (``scheme://user:password@``, ``password=``) hidden (for storage in evidence and the
    API)."""
    if isinstance(doc, dict):
        return {k: (REDACTED if k == "secret" and v else redact(v)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [redact(v) for v in doc]
    if isinstance(doc, str) and "://" in doc:
        return redact_url(doc)
    return doc


def dedupe_key(key: GroupKey, policy: TriggerPolicy, window_end: float) -> str:
    """One key per (fleet, model, version) and cooldown period."""
    return f"{key[0]}/{key[1]}/{key[2]}/{math.floor(window_end / policy.cooldown_s)}"


def in_cooldown(conn: Connection, key: GroupKey, policy: TriggerPolicy, now: float) -> bool:
    """True while the group's last trigger is younger than the cooldown."""
    c = triggers.c
    last = conn.execute(sa.select(sa.func.max(c.fired_at)).where(
        c.fleet == key[0], c.model_name == key[1], c.model_version == key[2])).scalar()
    return last is not None and now - last < policy.cooldown_s


def _insert(conn: Connection, row: dict[str, Any]) -> int | None:
    stmt = (UPSERTS[conn.dialect.name](triggers).values(**row)
            .on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(triggers.c.id))
    return conn.execute(stmt).scalar()


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def fire(conn: Connection, key: GroupKey, policy: TriggerPolicy, evidence: dict[str, Any],
         window_end: float, now: float, exports_dir: Path) -> int | None:
    """Record a trigger with its samples export, evidence file and actions; returns its id,
    or None when another controller already fired for this key."""
    policy_doc = redact(policy.model_dump(mode="json"))
    trigger_id = _insert(conn, {
        "fleet": key[0], "model_name": key[1], "model_version": key[2],
        "dedupe_key": dedupe_key(key, policy, window_end), "fired_at": now,
        "window_end": window_end, "policy": policy_doc, "evidence": evidence})
    if trigger_id is None:
        return None
    npz = exports_dir / f"trigger-{trigger_id}-samples.npz"
    meta = export_samples(conn, SampleFilter(key[0], key[1], key[2],
                                             limit=policy.export_max_samples), npz)
    evidence_path = exports_dir / f"trigger-{trigger_id}-evidence.json"
    full = {**evidence, "trigger_id": trigger_id, "fired_at": now,
            "samples_export": {"path": str(npz), "samples": meta["samples"]},
            "evidence_file": str(evidence_path)}
    _write_json(evidence_path, full)
    conn.execute(sa.update(triggers).where(triggers.c.id == trigger_id).values(
        evidence=full, samples_export=str(npz), samples_count=meta["samples"]))
    rows = [{"trigger_id": trigger_id, "idx": i, "kind": a.kind,
             "config": a.model_dump(mode="json"), "state": "pending", "attempts": 0,
             "max_attempts": policy.max_attempts, "next_attempt_at": now, "updated_at": now}
            for i, a in enumerate(policy.actions)]
    if rows:
        conn.execute(sa.insert(actions), rows)
    return trigger_id
