"""``/api/v1/artifacts/{sha256}``: bundle bytes by content address, with Range (resume).
With the S3 backend the answer is a 307 to a presigned URL of the object (which honours
Range too), so the bytes never pass through the API host.

Auth: the API token, the device's own credential (HTTP Basic) or a signed URL
(see ``cloud_sync.api.auth.artifact_access``). ``ETag`` is the quoted sha256.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy.engine import Connection, Engine

from cloud_sync.api.auth import artifact_access
from cloud_sync.api.deps import get_engine
from cloud_sync.api.errors import ApiError
from cloud_sync.api.ranges import parse_range
from cloud_sync.artifacts import is_sha256
from cloud_sync.store.queries import artifact_file

router = APIRouter(prefix="/api/v1/artifacts", tags=["artifacts"])
CHUNK = 256 << 10
MEDIA_TYPE = "application/octet-stream"


def _located(conn: Connection, sha256: str) -> tuple[str, int]:
    if not is_sha256(sha256):
        raise ApiError(400, f"{sha256[:80]!r} is not a sha256 (64 lowercase hex digits)")
    found = artifact_file(conn, sha256)
    if found is None:
        raise ApiError(404, f"no artifact {sha256}; publish it with 'edgekit cloud publish'")
    return found


def _file(location: str, size: int, sha256: str) -> tuple[Path, int]:
    path = Path(location)
    if not path.is_file() or path.stat().st_size != size:
        raise ApiError(500, f"artifact {sha256[:12]}… is registered but its file is missing "
                            "or damaged in the artifacts folder; publish the bundle again")
    return path, size


def _read(path: Path, start: int, end: int, sent) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            sent.inc(len(chunk))
            yield chunk


def download_artifact(sha256: str, request: Request, _who: str = Depends(artifact_access),
                      engine: Engine = Depends(get_engine)) -> Response:
    """The artifact's bytes (200), or one byte range of them (206)."""
    with engine.connect() as conn:  # closed before streaming starts
        location, size = _located(conn, sha256)
    store = request.app.state.settings.artifacts
    if location == store.location(sha256):
        url = store.presign(sha256)  # None for a folder store
        if url is not None:
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    path, size = _file(location, size, sha256)
    wanted = parse_range(request.headers.get("range"), size)
    start, end = wanted if wanted is not None else (0, size - 1)
    headers = {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes",
               "Content-Length": str(end - start + 1 if size else 0),
               "Cache-Control": "private, max-age=31536000, immutable"}
    status = 206 if wanted is not None else 200
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if request.method == "HEAD" or size == 0:
        return Response(status_code=status, headers=headers, media_type=MEDIA_TYPE)
    sent = request.app.state.metrics.artifact_bytes
    return StreamingResponse(_read(path, start, end, sent), status_code=status, headers=headers,
                             media_type=MEDIA_TYPE)


RESPONSES = {206: {"description": "The requested byte range."},
             307: {"description": "S3 backend: a presigned URL of the object."},
             416: {"description": "The Range is malformed, multiple, or outside the file."}}
for _method in ("GET", "HEAD"):
    router.add_api_route("/{sha256}", download_artifact, methods=[_method], responses=RESPONSES,
                         name=f"artifact_{_method.lower()}")
