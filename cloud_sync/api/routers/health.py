"""``/healthz`` (the store answers) and ``/metrics`` (Prometheus); both open."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy.engine import Connection

from cloud_sync.api.deps import get_conn
from cloud_sync.api.metrics import metrics_endpoint

router = APIRouter(tags=["health"])
router.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)


@router.get("/healthz")
def healthz(conn: Connection = Depends(get_conn)) -> dict[str, Any]:
    """200 ``{"ok": true}`` when the store answers a query."""
    conn.exec_driver_sql("SELECT 1")
    return {"ok": True, "database": conn.dialect.name}
