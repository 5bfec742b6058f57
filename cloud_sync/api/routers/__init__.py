"""One router per resource; ``ROUTERS`` is what ``create_app`` mounts, in order."""

from __future__ import annotations

from cloud_sync.api.routers import (
    artifacts,
    broker_auth,
    devices,
    drift,
    health,
    ingest,
    models,
    rollouts,
    triggers,
)

ROUTERS = (health.router, devices.router, models.router, artifacts.router, ingest.router,
           drift.router, triggers.router, rollouts.router, broker_auth.router)

__all__ = ["ROUTERS"]
