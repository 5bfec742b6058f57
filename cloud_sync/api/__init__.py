"""The cloud's HTTP API (FastAPI): ``create_app(cfg, engine)``; see ``app`` and ``auth``."""

from __future__ import annotations

from cloud_sync.api.app import create_app
from cloud_sync.artifacts import sign_artifact_url

__all__ = ["create_app", "sign_artifact_url"]
