"""The templates and the helpers every page uses: render a page, answer a bad request with
a one-line error page, parse a page number."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from cloud_sync.dashboard import format as fmt
from cloud_sync.rollouts.states import shown_device_state
from edgekit import __version__

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters.update(iso=fmt.iso, num=fmt.number, label=fmt.label)
templates.env.globals.update(version=__version__, sections=fmt.sections,
                             key_values=fmt.key_values, records=fmt.records,
                             shown_device_state=shown_device_state)


class DashboardError(Exception):
    """A page cannot be shown: HTTP ``status`` and a one-line ``message`` saying what to fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """``name`` rendered with ``context``, the current time and an ``ago`` bound to it."""
    now = time.time()
    return templates.TemplateResponse(
        request, name, {"now": now, "ago": lambda ts: fmt.ago(ts, now), **context},
        status_code=status)


async def error_page(request: Request, exc: DashboardError) -> HTMLResponse:
    """Exception handler: the error page with the one-line message."""
    return render(request, "error.html", status=exc.status, message=exc.message)


def positive_int(name: str, text: str | None, default: int, most: int | None = None) -> int:
    """``text`` as an int >= 1 (at most ``most``); DashboardError otherwise."""
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or (most is not None and value > most):
        bound = f" and at most {most}" if most is not None else ""
        raise DashboardError(400, f"{name} must be a whole number >= 1{bound}, got {text!r}")
    return value
