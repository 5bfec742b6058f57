"""Receiving an uploaded bundle: size-capped, streamed to a temp file, hashed on the way,
then verified and published off the event loop."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from cloud_sync.api.errors import ApiError
from cloud_sync.api.settings import ApiSettings
from cloud_sync.errors import RegistryError
from cloud_sync.publishing import Published, publish_file
from edge_agent.errors import BundleError
from edge_agent.hashing import Sha256

REFUSED_TYPES = ("multipart/", "application/x-www-form-urlencoded")
RAW_HINT = ("send the .ekb as the raw request body with Content-Type: application/octet-stream "
            "(curl --data-binary @FILE.ekb)")


def _check_headers(request: Request, cap: int) -> None:
    kind = request.headers.get("content-type", "").lower()
    if kind.startswith(REFUSED_TYPES):
        raise ApiError(415, f"form uploads are not accepted; {RAW_HINT}")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise ApiError(413, f"upload is {length} bytes; the cap is {cap}")


async def _spool(request: Request, temp: Path, cap: int) -> tuple[str, int]:
    digest, size = Sha256(), 0
    with open(temp, "wb") as out:
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise ApiError(413, f"upload is over the cap of {cap} bytes")
                digest.update(chunk)
                out.write(chunk)
        except ClientDisconnect:
            raise ApiError(400, "the client disconnected during the upload; send it again") \
                from None
    if size == 0:
        raise ApiError(400, f"empty upload; {RAW_HINT}")
    return digest.hexdigest(), size


async def receive_bundle(request: Request) -> Published:
    """Spool, verify and publish the request's bundle; the temp file never outlives this."""
    settings: ApiSettings = request.app.state.settings
    counter = request.app.state.metrics.publishes
    try:
        _check_headers(request, settings.max_upload_bytes)
        temp = settings.artifacts.incoming()
        try:
            sha, size = await _spool(request, temp, settings.max_upload_bytes)
            published = await run_in_threadpool(
                publish_file, request.app.state.engine, settings.artifacts, settings.pubkeys,
                temp, sha, size)
        finally:
            temp.unlink(missing_ok=True)
    except (ApiError, BundleError, RegistryError) as exc:
        counter.labels(_outcome(exc)).inc()
        raise
    counter.labels("created" if published.created else "duplicate").inc()
    return published


def _outcome(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return {413: "too_large", 415: "bad_type"}.get(exc.status, "bad_request")
    return "conflict" if isinstance(exc, RegistryError) else "bad_bundle"
