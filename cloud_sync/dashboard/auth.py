"""Who may see the dashboard: whoever holds the API token, sent as the bearer header (as the
API takes it) or, from a browser, as the HttpOnly cookie the login form sets.

Without it, a page request is sent to the login form (htmx requests get ``HX-Redirect``)."""

from __future__ import annotations

from urllib.parse import parse_qs, quote

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response

from cloud_sync.api.auth import token_matches
from cloud_sync.api.deps import get_settings
from cloud_sync.api.settings import ApiSettings

COOKIE = "edgekit_token"
COOKIE_MAX_AGE_S = 12 * 3600
PREFIX = "/dashboard"
MAX_FORM_BYTES = 4096


class LoginRequired(Exception):
    """The request carries no valid token; ``next`` is where to return after logging in."""

    def __init__(self, next_path: str):
        super().__init__("log in with the API token")
        self.next_path = next_path


def presented_token(request: Request) -> str | None:
    """The bearer token, else the login cookie, else None."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE)


def require_login(request: Request, settings: ApiSettings = Depends(get_settings)) -> None:
    """Dependency: the request carries the API token; else ``LoginRequired``."""
    given = presented_token(request)
    if given is None or not token_matches(settings, given):
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path)


def safe_next(path: str | None) -> str:
    """Where to go after logging in: a dashboard path only (no open redirects)."""
    if path and path.startswith(PREFIX) and not path.startswith("//") and "\\" not in path:
        return path
    return PREFIX + "/"


async def login_redirect(request: Request, exc: LoginRequired) -> Response:
    """Exception handler: send the browser to the login form (htmx: ``HX-Redirect``)."""
    target = f"{PREFIX}/login?next={quote(safe_next(exc.next_path), safe='')}"
    if request.headers.get("HX-Request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (first value of each field)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def set_login_cookie(response: Response, token: str, secure: bool) -> None:
    """The HttpOnly, SameSite=Strict cookie holding the token."""
    response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True,
                        samesite="strict", secure=secure, path=PREFIX)
