"""``/api/v1/rollouts``: start a staged rollout, list them, one in detail, abort one."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.engine import Connection

from cloud_sync.api.auth import require_token
from cloud_sync.api.deps import get_conn, get_write_conn
from cloud_sync.api.errors import ApiError
from cloud_sync.rollouts.policy import RolloutPolicy
from cloud_sync.rollouts.store import (
    RolloutConflict,
    RolloutError,
    abort_rollout,
    create_rollout,
    list_rollouts,
    rollout_doc,
)

router = APIRouter(prefix="/api/v1/rollouts", tags=["rollouts"],
                   dependencies=[Depends(require_token)])


class StartRollout(BaseModel):
    """The body of POST /api/v1/rollouts: what to roll out where, and the policy."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=64)
    fleet: str | None = Field(None, max_length=64)
    devices: list[str] | None = None
    policy: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_target(self) -> StartRollout:
        if bool(self.fleet) == bool(self.devices):
            raise ValueError("give exactly one of 'fleet' and 'devices'")
        return self


def _policy(doc: dict[str, Any]) -> RolloutPolicy:
    try:
        return RolloutPolicy.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "policy"
        raise ApiError(400, f"rollout policy field '{where}': {err['msg']}") from None


@router.post("", status_code=201)
def start_rollout(body: StartRollout,
                  conn: Connection = Depends(get_write_conn)) -> dict[str, Any]:
    """Create a ``pending`` rollout; the controller takes it from there. 409 when an open
    rollout holds any of the devices (the error names it)."""
    policy = _policy(body.policy)
    try:
        rid = create_rollout(conn, body.model, body.version, body.fleet, body.devices, policy,
                             time.time())
    except RolloutConflict as exc:
        raise ApiError(409, str(exc)) from None
    except RolloutError as exc:
        raise ApiError(400, str(exc)) from None
    return rollout_doc(conn, rid)


@router.get("")
def rollouts_list(limit: int = Query(100, ge=1, le=1000),
                  conn: Connection = Depends(get_conn)) -> dict[str, Any]:
    """Rollouts, newest first (state, wave, device counts, verdict)."""
    return {"items": list_rollouts(conn, limit)}


@router.get("/{rollout_id}")
def rollout_detail(rollout_id: int, conn: Connection = Depends(get_conn)) -> dict[str, Any]:
    """One rollout with its devices, verdict figures and timeline."""
    doc = rollout_doc(conn, rollout_id)
    if doc is None:
        raise ApiError(404, f"no rollout {rollout_id}; see GET /api/v1/rollouts")
    return doc


@router.post("/{rollout_id}/abort")
def rollout_abort(rollout_id: int,
                  conn: Connection = Depends(get_write_conn)) -> dict[str, Any]:
    """Halt the rollout; the controller rolls back every device that took the version."""
    try:
        state = abort_rollout(conn, rollout_id, time.time())
    except RolloutError as exc:
        raise ApiError(404, f"{exc}; see GET /api/v1/rollouts") from None
    return {"id": rollout_id, "state": state}
