"""Every error the API answers is ``{"error": "one line"}`` with the right status.

Routers raise ``ApiError(status, message)``; library errors map to a status through
``LIBRARY_STATUS`` (most specific class first), anything else is a logged 500.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from cloud_sync.artifacts import ArtifactError
from cloud_sync.artifacts_s3 import ArtifactStoreError
from cloud_sync.errors import RegistryError, StoreError
from cloud_sync.publishing import TrustError
from edge_agent.errors import BundleError, ConfigError, EdgekitError, first_line

log = logging.getLogger(__name__)

LIBRARY_STATUS: dict[type[Exception], int] = {
    TrustError: 503,
    BundleError: 400,  # includes SignatureError
    RegistryError: 409,
    ConfigError: 400,
    StoreError: 503,
    ArtifactStoreError: 503,  # the object store is down or refused: retry later
    ArtifactError: 500,
    EdgekitError: 400,
}


class ApiError(Exception):
    """An error answer: HTTP ``status`` and a one-line ``message`` that says what to fix."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error_response(status: int, message: str, headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    """The one error shape."""
    return JSONResponse({"error": first_line(Exception(message), 300)}, status_code=status,
                        headers=headers)


async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.headers)


ROUTING_ERRORS = {404: "no such endpoint {method} {path}; see /docs",
                  405: "{method} is not allowed on {path}; see /docs"}


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = str(exc.detail)
    if message in ("Not Found", "Method Not Allowed") and exc.status_code in ROUTING_ERRORS:
        message = ROUTING_ERRORS[exc.status_code].format(method=request.method,
                                                          path=request.url.path[:100])
    return error_response(exc.status_code, message, getattr(exc, "headers", None))


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = " ".join(str(p) for p in err.get("loc", ()))
    return error_response(422, f"{where}: {err.get('msg')}" if where else str(err.get("msg")))


async def _library_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for cls, code in LIBRARY_STATUS.items() if isinstance(exc, cls)), 500)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, first_line(exc))
    return error_response(status, first_line(exc, 300))


async def _integrity_error(request: Request, exc: sa.exc.IntegrityError) -> JSONResponse:
    log.warning("%s %s: %s", request.method, request.url.path, first_line(exc.orig or exc))
    return error_response(409, "the request conflicts with a concurrent change; retry it")


async def _database_error(request: Request, exc: sa.exc.DBAPIError) -> JSONResponse:
    log.error("%s %s: database error: %s", request.method, request.url.path,
              first_line(exc.orig or exc))
    return error_response(503, "the database is unavailable or refused the query; "
                               "try again, and see the server log")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(500, f"internal error ({type(exc).__name__}); see the server log")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(EdgekitError, _library_error)
    app.add_exception_handler(sa.exc.IntegrityError, _integrity_error)
    app.add_exception_handler(sa.exc.DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
