"""One router per resource; ``ROUTERS`` is what ``create_app`` mounts, in order."""

from __future__ import annotations

from cloud_sync.api.routers import artifacts, devices, health, ingest, models

ROUTERS = (health.router, devices.router, models.router, artifacts.router, ingest.router)

__all__ = ["ROUTERS"]
