"""Rows for rollout tests, inserted directly: devices, a published model, telemetry and
cmd/result messages."""

from __future__ import annotations

import itertools

import sqlalchemy as sa

from cloud_sync.store.schema import artifacts, bundles, devices, messages, models

SHA = "ab" * 32
_seq = itertools.count(1)


def add_devices(conn, ids, fleet="f1", version="1", state="online", profile="x86-64"):
    conn.execute(sa.insert(devices), [
        {"id": d, "fleet": fleet, "profile": profile, "model_name": "tiny",
         "model_version": version, "state": state, "registered_by": "cli", "created_at": 0.0,
         "last_seen": 0.0} for d in ids])


def publish_model(conn, version="2", profile="x86-64", sha=SHA):
    mid = conn.execute(sa.insert(models).values(
        name="tiny", version=version, published_at=0.0, metrics={}, lineage={})
        .returning(models.c.id)).scalar()
    conn.execute(sa.insert(artifacts).values(sha256=sha, size=100, path="/x", created_at=0.0))
    conn.execute(sa.insert(bundles).values(sha256=sha, model_id=mid, profile=profile,
                                           format="onnx", precision="fp32", size=100,
                                           manifest={}, created_at=0.0))


def result(conn, device, cmd_id, ok=True, phase="probation", ts=0.0, ctype="update"):
    conn.execute(sa.insert(messages).values(
        device_id=device, fleet="f1", kind="cmd/result", seq=next(_seq), ts=ts,
        received_at=ts, payload={"cmd_id": cmd_id, "type": ctype, "ok": ok,
                                 "error": None if ok else "broken",
                                 "detail": {"phase": phase}}))


def telemetry(conn, device, version, ts, inferences=20, confidence=0.8, classes=None,
              non_finite=0, errors=0, p95=2.0):
    conn.execute(sa.insert(messages).values(
        device_id=device, fleet="f1", kind="telemetry", seq=next(_seq), ts=ts,
        received_at=ts, model_name="tiny", model_version=version, inferences=inferences,
        errors=errors, latency_p95=p95, confidence_mean=confidence,
        payload={"model": {"name": "tiny", "version": version, "non_finite": non_finite},
                 "class_counts": classes or {"1": inferences // 2, "2": inferences // 2}}))
