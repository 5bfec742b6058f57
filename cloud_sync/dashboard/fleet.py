"""Fleet pages: the overview, the devices table (sorted, filtered and paged in SQL) and one
device with its charts."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection

from cloud_sync.api.deps import get_conn
from cloud_sync.dashboard import queries as q
from cloud_sync.dashboard.auth import PREFIX, require_login
from cloud_sync.dashboard.render import DashboardError, positive_int, render
from cloud_sync.drift import ALL_KINDS
from cloud_sync.registry import STATES

router = APIRouter(prefix=PREFIX, include_in_schema=False, dependencies=[Depends(require_login)])
PER_PAGE_MAX = 500
RECENT_S = 24 * 3600
DRIFT_KINDS = ALL_KINDS  # every task's, in order; a device shows those it has scores of
DRIFT_CAPTIONS = {
    "input": "Input (PSI, worst channel)", "output": "Output (JS distance of classes)",
    "confidence": "Confidence drop", "det_count": "Detections per frame (PSI, n = frames)",
    "det_score": "Detection scores (PSI, n = effective frames)",
    "det_class": "Detected class mix (JS distance, n = effective frames)",
    "det_area": "Box areas (PSI, n = effective frames)",
    "values": "Output values (PSI, worst output)"}


@router.get("/")
def overview(request: Request, conn: Connection = Depends(get_conn)) -> Response:
    """Online / stale / offline counts, versions in the field, recent activity."""
    context = {"fleet": q.fleet_overview(conn),
               "activity": q.activity_counts(conn, time.time() - RECENT_S),
               "triggers": q.trigger_rows(conn, 5, 0)[0],
               "rollouts": q.rollout_rows(conn, 5, 0)[0]}
    partial = bool(request.headers.get("HX-Request"))
    return render(request, "_overview_body.html" if partial else "overview.html", **context)


def device_filter(request: Request) -> q.DeviceFilter:
    """The devices table's query string, checked; DashboardError says what is wrong."""
    args = request.query_params
    sort = args.get("sort") or "id"
    if sort not in q.SORTS:
        raise DashboardError(400, f"unknown sort {sort!r}; one of {', '.join(q.SORTS)}")
    state = args.get("state") or None
    if state is not None and state not in STATES:
        raise DashboardError(400, f"unknown state {state!r}; one of {', '.join(STATES)}")
    return q.DeviceFilter(
        fleet=args.get("fleet") or None, state=state, version=args.get("version") or None,
        search=(args.get("q") or "").strip()[:64] or None, sort=sort,
        descending=args.get("dir") == "desc", page=positive_int("page", args.get("page"), 1),
        per_page=positive_int("per_page", args.get("per_page"), 50, PER_PAGE_MAX))


@router.get("/devices")
def devices_page(request: Request, conn: Connection = Depends(get_conn)) -> Response:
    """The devices table; htmx requests get only the table."""
    f = device_filter(request)
    page = q.device_table(conn, f)
    context = {"f": f, "page": page, "pages": page.pages(f.per_page), "states": STATES}
    if request.headers.get("HX-Request"):
        return render(request, "_device_table.html", **context)
    return render(request, "devices.html", choices=q.filter_choices(conn), **context)


@router.get("/devices/{device_id}")
def device_page(device_id: str, request: Request,
                conn: Connection = Depends(get_conn)) -> Response:
    """One device: registry row, telemetry charts, drift per kind with its threshold."""
    device = q.device_row(conn, device_id)
    if device is None:
        raise DashboardError(404, f"no device {device_id!r} is registered; "
                                  "pick one from the devices table")
    drift = q.device_drift(conn, device_id)
    telemetry = q.device_telemetry(conn, device_id)
    charts = {"telemetry": telemetry,
              "drift": {k: drift[k] for k in DRIFT_KINDS
                        if k in drift and any(v is not None for v in drift[k]["score"])}}
    return render(request, "device.html", device=device, charts=charts,
                  detector=any(f is not None for f in telemetry["frames"]),
                  confident=any(c is not None for c in telemetry["confidence_mean"]),
                  captions=DRIFT_CAPTIONS, channels=q.latest_channels(conn, device_id))
