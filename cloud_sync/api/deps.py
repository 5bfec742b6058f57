"""The two dependencies every router uses: the settings and a database connection."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.engine import Connection, Engine

from cloud_sync.api.settings import ApiSettings
from cloud_sync.store import transaction


def get_settings(request: Request) -> ApiSettings:
    """The app's ``ApiSettings``."""
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    """The app's store engine (for handlers that open their own write transaction)."""
    return request.app.state.engine


def get_conn(request: Request) -> Iterator[Connection]:
    """A read connection for one request, closed after the answer."""
    with request.app.state.engine.connect() as conn:
        yield conn


def get_write_conn(request: Request) -> Iterator[Connection]:
    """A write transaction for one request: committed when the handler returns."""
    with transaction(request.app.state.engine) as conn:
        yield conn
