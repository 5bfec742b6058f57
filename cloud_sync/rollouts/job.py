"""The rollout controller as a leader-only serve job: one transaction per step (rows
first), then the step's commands are published."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine

from cloud_sync.config import CloudConfig
from cloud_sync.rollouts.commands import publish
from cloud_sync.rollouts.machine import controller_step
from cloud_sync.store import transaction

log = logging.getLogger(__name__)


def artifact_signer(cfg: CloudConfig):
    """(sha256, ttl_s, sent_at) -> the URL an update command carries: the object store's
    presigned URL with the S3 backend, else a signed URL on the cloud's HTTP API."""
    from cloud_sync.artifacts import load_url_secret, open_store, sign_artifact_url

    store = open_store(cfg)
    base = cfg.rollouts.artifact_base or f"http://{cfg.http}"
    if not cfg.rollouts.artifact_base and cfg.artifacts.backend == "local" \
            and str(cfg.db).startswith("postgresql"):
        log.warning("update commands carry download URLs on this host (%s): a device that "
                    "downloads after this serve stops gets no bundle. With several serves, "
                    "set rollouts.artifact_base to their load balancer, or use "
                    "artifacts.backend: s3", base)
    secret = load_url_secret(cfg.data_dir)
    return lambda sha256, ttl_s, sent_at: (store.presign(sha256, ttl_s) or sign_artifact_url(
        base, sha256, ttl_s, secret, now=sent_at))


def rollout_job(cfg: CloudConfig):
    """The job ``(engine, now) -> report`` run by ``Housekeeping``."""
    signer = artifact_signer(cfg)

    def run(engine: Engine, now: float) -> dict[str, Any]:
        with transaction(engine) as conn:
            report = controller_step(conn, signer, now)
        return {**report.to_dict(), "published": publish(cfg, report.outgoing, now)}
    return run
