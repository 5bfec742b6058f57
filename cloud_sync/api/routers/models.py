"""``/api/v1/models``: published models, their versions, and publishing a bundle (POST)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Connection

from cloud_sync.api.auth import require_token
from cloud_sync.api.deps import get_conn
from cloud_sync.api.errors import ApiError
from cloud_sync.api.upload import receive_bundle
from cloud_sync.artifacts import ARTIFACT_PATH
from cloud_sync.registry import ModelVersion, get_model, list_models
from cloud_sync.store.queries import model_summaries

router = APIRouter(prefix="/api/v1/models", tags=["models"],
                   dependencies=[Depends(require_token)])


def version_doc(model: ModelVersion) -> dict[str, Any]:
    """A version with manifest, metrics, lineage and its bundles per profile; each bundle
    has its download ``url`` instead of the server's file path."""
    doc = model.to_dict()
    for bundle in doc["bundles"]:
        bundle.pop("path", None)
        bundle["url"] = ARTIFACT_PATH.format(sha256=bundle["sha256"])
    doc["profiles"] = [b["profile"] for b in doc["bundles"]]
    return doc


@router.get("")
def models_list(conn: Connection = Depends(get_conn)) -> list[dict[str, Any]]:
    """Each model name with its number of versions, the latest one and its profiles."""
    return model_summaries(conn)


@router.get("/{name}/versions")
def model_versions(name: str, conn: Connection = Depends(get_conn)) -> list[dict[str, Any]]:
    """Every version of a model, newest first."""
    found = list_models(conn, name)
    if not found:
        raise ApiError(404, f"no model {name!r} is published; see GET /api/v1/models")
    return [version_doc(m) for m in found]


@router.get("/{name}/versions/{version}")
def model_version(name: str, version: str, conn: Connection = Depends(get_conn)
                  ) -> dict[str, Any]:
    """One version of a model."""
    found = get_model(conn, name, version)
    if found is None:
        raise ApiError(404, f"model {name!r} has no version {version!r}; "
                            f"see GET /api/v1/models/{name}/versions")
    return version_doc(found)


@router.post("", status_code=201, responses={
    200: {"description": "The same bundle was already published (nothing changed)."},
    400: {"description": "Not a bundle, or its signature does not verify (nothing stored)."},
    409: {"description": "This name/version/profile is published with different bytes."},
    413: {"description": "Over the upload size cap."}})
async def publish(request: Request) -> JSONResponse:
    """Publish a signed ``.ekb``, sent as the raw request body
    (``Content-Type: application/octet-stream``): verified against the cloud's trusted keys,
    stored by sha256, its model version registered. 201 when new, 200 when already there."""
    published = await receive_bundle(request)
    return JSONResponse(published.to_dict(), status_code=201 if published.created else 200)
