"""``/api/v1/triggers``: fired retraining triggers, their evidence, actions and attempts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.engine import Connection

from cloud_sync.api.auth import require_token
from cloud_sync.api.deps import get_conn
from cloud_sync.api.errors import ApiError
from cloud_sync.triggers.queries import get_trigger, list_triggers

router = APIRouter(prefix="/api/v1/triggers", tags=["triggers"],
                   dependencies=[Depends(require_token)])


@router.get("")
def triggers_list(fleet: str | None = Query(None, max_length=64),
                  limit: int = Query(100, ge=1, le=1000),
                  conn: Connection = Depends(get_conn)) -> dict[str, Any]:
    """Triggers newest first with their actions' states (evidence: ``/{id}``)."""
    items = list_triggers(conn, fleet, limit)
    return {"items": items, "count": len(items), "limit": limit}


@router.get("/{trigger_id}")
def trigger_detail(trigger_id: int, conn: Connection = Depends(get_conn)) -> dict[str, Any]:
    """One trigger: policy, evidence, samples export, every action and attempt."""
    found = get_trigger(conn, trigger_id)
    if found is None:
        raise ApiError(404, f"no trigger {trigger_id}; see GET /api/v1/triggers")
    return found
