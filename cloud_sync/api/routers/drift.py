"""``/api/v1/drift``: stored drift scores, filterable by fleet, device, model, kind, time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.engine import Connection

from cloud_sync.api.auth import require_token
from cloud_sync.api.deps import get_conn
from cloud_sync.api.errors import ApiError
from cloud_sync.drift import ALL_KINDS as KINDS
from cloud_sync.triggers.queries import ScoreFilter, drift_page

router = APIRouter(prefix="/api/v1/drift", tags=["drift"], dependencies=[Depends(require_token)])
SCOPES = ("device", "fleet")


@router.get("")
def list_scores(fleet: str | None = Query(None, max_length=64),
                device: str | None = Query(None, max_length=64),
                scope: str | None = Query(None, description="device or fleet."),
                model: str | None = Query(None, max_length=128),
                version: str | None = Query(None, max_length=64),
                kind: str | None = Query(None, description=f"One of {', '.join(KINDS)}."),
                start: float | None = Query(None, alias="from",
                                            description="Windows ending after (Unix s)."),
                end: float | None = Query(None, alias="to",
                                          description="Windows starting before (Unix s)."),
                limit: int = Query(1000, ge=1, le=10000),
                conn: Connection = Depends(get_conn)) -> dict[str, Any]:
    """Scores newest window first, each with its window, threshold (= max(critical value,
    floor)), both sample sizes and verdict."""
    if kind is not None and kind not in KINDS:
        raise ApiError(400, f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if scope is not None and scope not in SCOPES:
        raise ApiError(400, f"unknown scope {scope!r}; one of {', '.join(SCOPES)}")
    if start is not None and end is not None and end <= start:
        raise ApiError(400, "'to' must be after 'from'")
    items = drift_page(conn, ScoreFilter(fleet, device, scope, model, version, kind, start, end,
                                         limit))
    return {"items": items, "count": len(items), "limit": limit}
