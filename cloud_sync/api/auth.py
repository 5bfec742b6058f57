"""Who may call what.

- **Token** (``Authorization: Bearer <token>``): every ``/api/v1`` request, reads
  included (telemetry and fleet layout are not public). Compared in constant time.
- **Artifact downloads** (``/api/v1/artifacts/{sha256}``) accept any one of: the
  token; a device's own MQTT credential as HTTP Basic (username = device id,
  checked against its stored Mosquitto hash); or a signed URL
  (``?expires=..&sig=..``, see ``cloud_sync.artifacts.sign_artifact_url``), which is
  what update commands carry, since the agent's downloader sends no credentials.
- **Broker auth** (``/broker-auth/...``, called by EMQX / VerneMQ, not by people): an
  optional shared secret instead of the token; see ``routers/broker_auth``.
- Open: ``/healthz``, ``/metrics`` (for scrapers; put them behind the proxy if that
  matters), ``/docs`` and ``/openapi.json``.

No credential: 401 with ``WWW-Authenticate``. A wrong token or device password: 401.
An expired or forged signed URL: 403.
"""

from __future__ import annotations

import base64
import binascii
import hmac

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine

from cloud_sync.api.deps import get_engine, get_settings
from cloud_sync.api.errors import ApiError
from cloud_sync.api.settings import TOKEN_ENV, ApiSettings
from cloud_sync.artifacts import check_signature
from cloud_sync.registry import verify_password
from cloud_sync.store.schema import devices

bearer = HTTPBearer(auto_error=False, description="The API token (EDGEKIT_API_TOKEN).")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="edgekit"'}
ARTIFACT_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="edgekit", Basic realm="edgekit"'}


def token_matches(settings: ApiSettings, given: str) -> bool:
    """True when ``given`` is the API token (constant-time)."""
    return settings.token is not None and hmac.compare_digest(
        given.encode("utf-8"), settings.token.encode("utf-8"))


def _check_token(settings: ApiSettings, creds: HTTPAuthorizationCredentials | None,
                 challenge: dict[str, str]) -> None:
    if settings.token is None:
        raise ApiError(401, f"this server has no API token; start it with {TOKEN_ENV} set",
                       challenge)
    if creds is None:
        raise ApiError(401, "missing API token; send 'Authorization: Bearer <token>'", challenge)
    if not token_matches(settings, creds.credentials):
        raise ApiError(401, "wrong API token", challenge)


def require_token(settings: ApiSettings = Depends(get_settings),
                  creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
    """Dependency: the request carries the API token; else 401."""
    _check_token(settings, creds, CHALLENGE)
    return "token"


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, param = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(param.strip(), validate=True) \
            .decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user, sep, password = "", "", ""
    if not sep:
        raise ApiError(401, "malformed Basic credentials; send base64 of 'DEVICE_ID:PASSWORD'",
                       ARTIFACT_CHALLENGE)
    return user, password


def _device_may_download(engine: Engine, device_id: str, password: str) -> bool:
    with engine.connect() as conn:  # short: a download must not hold a pooled connection
        stored = conn.execute(sa.select(devices.c.credential_hash)
                              .where(devices.c.id == device_id)).scalar()
    return stored is not None and verify_password(password, stored)


def artifact_access(request: Request, sha256: str,
                    settings: ApiSettings = Depends(get_settings),
                    engine: Engine = Depends(get_engine),
                    creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
    """Dependency: who may fetch this artifact ('token', 'device:<id>' or 'signed-url')."""
    query = request.query_params
    if "sig" in query or "expires" in query:
        why = check_signature(settings.url_secret, sha256, query.get("expires", ""),
                              query.get("sig", ""))
        if why is not None:
            raise ApiError(403, why)
        return "signed-url"
    basic = _basic_credentials(request)
    if basic is not None:
        if not _device_may_download(engine, *basic):
            raise ApiError(401, "wrong device id or password", ARTIFACT_CHALLENGE)
        return f"device:{basic[0]}"
    _check_token(settings, creds, ARTIFACT_CHALLENGE)
    return "token"
