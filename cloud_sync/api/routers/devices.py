"""``/api/v1/devices``: the registry's devices, one device, its telemetry time series."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.engine import Connection

from cloud_sync.api.auth import require_token
from cloud_sync.api.deps import get_conn
from cloud_sync.api.errors import ApiError
from cloud_sync.registry import STATES, Device, get_device
from cloud_sync.store.queries import device_page, telemetry_series

router = APIRouter(prefix="/api/v1/devices", tags=["devices"],
                   dependencies=[Depends(require_token)])


def _known_device(conn: Connection, device_id: str) -> Device:
    device = get_device(conn, device_id)
    if device is None:
        raise ApiError(404, f"no device {device_id!r} is registered; see GET /api/v1/devices")
    return device


@router.get("")
def list_devices(fleet: str | None = Query(None, max_length=64, description="Only this fleet."),
                 state: str | None = Query(None, description=f"One of {', '.join(STATES)}."),
                 limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0),
                 conn: Connection = Depends(get_conn)) -> dict[str, Any]:
    """Devices by fleet then id, a page at a time; ``total`` counts all that match."""
    if state is not None and state not in STATES:
        raise ApiError(400, f"unknown state {state!r}; one of {', '.join(STATES)}")
    page = device_page(conn, fleet, state, limit, offset)
    return {"items": [d.to_dict() for d in page.items], "total": page.total,
            "limit": limit, "offset": offset}


@router.get("/{device_id}")
def device_detail(device_id: str, conn: Connection = Depends(get_conn)) -> dict[str, Any]:
    """One device as the registry knows it."""
    return _known_device(conn, device_id).to_dict()


@router.get("/{device_id}/telemetry")
def device_telemetry(device_id: str,
                     start: float | None = Query(None, alias="from",
                                                 description="Unix seconds, inclusive."),
                     end: float | None = Query(None, alias="to",
                                               description="Unix seconds, exclusive."),
                     limit: int = Query(1000, ge=1, le=10000),
                     conn: Connection = Depends(get_conn)) -> dict[str, Any]:
    """Telemetry figures (latency percentiles, inferences, errors, confidence) oldest first;
    when more than ``limit`` match, the newest ``limit`` and ``truncated: true``."""
    _known_device(conn, device_id)
    if start is not None and end is not None and end <= start:
        raise ApiError(400, "'to' must be after 'from'")
    points, truncated = telemetry_series(conn, device_id, start, end, limit)
    return {"device_id": device_id, "from": start, "to": end, "points": points,
            "truncated": truncated}
