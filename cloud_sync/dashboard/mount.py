"""Mounting the dashboard on the API app."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from cloud_sync.dashboard import activity, fleet, session
from cloud_sync.dashboard.auth import PREFIX, LoginRequired, login_redirect
from cloud_sync.dashboard.render import STATIC, DashboardError, error_page

ROUTERS = (session.router, fleet.router, activity.router)


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard on ``app`` under ``/dashboard`` (and redirect ``/`` there)."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="dashboard-static")
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(LoginRequired, login_redirect)
    app.add_exception_handler(DashboardError, error_page)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @app.get(PREFIX, include_in_schema=False)
    def dashboard_root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)


