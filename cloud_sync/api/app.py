"""The cloud's HTTP API: ``create_app(cfg, engine)`` builds the FastAPI app that
``edgekit cloud serve`` runs with uvicorn.

Adding a resource is one router module under ``routers/`` listed in ``ROUTERS``; it
takes ``Depends(get_conn)`` for the store and ``Depends(require_token)`` for auth.
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from cloud_sync.api.errors import install_error_handlers
from cloud_sync.api.metrics import ApiMetrics, RequestCounter
from cloud_sync.api.routers import ROUTERS
from cloud_sync.api.routers.broker_auth import Gate
from cloud_sync.api.settings import DEFAULT_MAX_UPLOAD, ApiSettings
from cloud_sync.config import CloudConfig
from edgekit import __version__

DESCRIPTION = (
    "edgekit's cloud API. Every /api/v1 request needs `Authorization: Bearer <token>` "
    "(EDGEKIT_API_TOKEN); artifact downloads also accept the device's MQTT credential as "
    "HTTP Basic or a signed URL. Errors are `{\"error\": \"one line\"}`.")


def create_app(cfg: CloudConfig, engine: Engine, *, api_token: str | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD) -> FastAPI:
    """The API app over ``engine`` (already opened and migrated by the caller, who also
    disposes it); the token is ``api_token``, else the config's, else $EDGEKIT_API_TOKEN."""
    app = FastAPI(title="edgekit cloud API", version=__version__, description=DESCRIPTION)
    app.state.settings = ApiSettings.resolve(cfg, api_token, max_upload_bytes)
    app.state.engine = engine
    app.state.broker_auth = Gate.resolve(cfg.broker_auth.http)  # /broker-auth: its secret
    app.state.metrics = ApiMetrics()
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    from cloud_sync.dashboard.mount import mount_dashboard  # it imports api.deps: not at the top

    mount_dashboard(app)  # /dashboard: the same token, as a header or the login cookie
    app.add_middleware(RequestCounter, metrics=app.state.metrics)
    return app
