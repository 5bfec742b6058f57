"""``/api/v1/ingest/stats``: what ingest accepted, skipped and quarantined."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy.engine import Connection

from cloud_sync.api.auth import require_token
from cloud_sync.api.deps import get_conn
from cloud_sync.store import read_counters
from cloud_sync.store.queries import quarantine_by_reason

router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"],
                   dependencies=[Depends(require_token)])


@router.get("/stats")
def ingest_stats(conn: Connection = Depends(get_conn)) -> dict[str, Any]:
    """The ingest counters (cumulative) and the quarantined messages kept, by reason."""
    kept = quarantine_by_reason(conn)
    return {"counters": read_counters(conn),
            "quarantine": {"kept": sum(kept.values()), "by_reason": kept}}
