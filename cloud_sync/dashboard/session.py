"""The login form (token -> HttpOnly cookie) and logout."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from cloud_sync.api.auth import token_matches
from cloud_sync.api.deps import get_settings
from cloud_sync.api.settings import TOKEN_ENV, ApiSettings
from cloud_sync.dashboard.auth import (
    COOKIE,
    PREFIX,
    read_form,
    safe_next,
    set_login_cookie,
)
from cloud_sync.dashboard.render import render

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    """The login form."""
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login")
async def login(request: Request, settings: ApiSettings = Depends(get_settings)) -> Response:
    """Check the token; right: set the cookie and go on; wrong: the form with one error line."""
    form = await read_form(request)
    target = safe_next(form.get("next"))
    token = form.get("token", "").strip()
    if settings.token is None:
        error = f"this server has no API token; start it with {TOKEN_ENV} set"
    elif not token:
        error = "enter the API token (the value of EDGEKIT_API_TOKEN on the server)"
    elif not token_matches(settings, token):
        error = "wrong token; use the server's EDGEKIT_API_TOKEN"
    else:
        answer = RedirectResponse(target, status_code=303)
        set_login_cookie(answer, token, secure=request.url.scheme == "https")
        return answer
    return render(request, "login.html", status=401, next=target, error=error)


@router.post("/logout")
def logout() -> Response:
    """Forget the cookie."""
    answer = RedirectResponse(f"{PREFIX}/login", status_code=303)
    answer.delete_cookie(COOKIE, path=PREFIX)
    return answer
