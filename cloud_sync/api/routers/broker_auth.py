"""``/broker-auth/...``: HTTP authentication and authorization for EMQX and VerneMQ,
answered from the registry (so a device added or removed counts at its next request).

- EMQX 5 HTTP authn: ``POST /broker-auth/emqx/authn`` with ``{"username", "password",
  "clientid"}`` -> ``{"result": "allow"|"deny"|"ignore", "is_superuser": false}``.
- EMQX 5 HTTP authz: ``POST /broker-auth/emqx/authz`` with ``{"username", "clientid",
  "topic", "action": "publish"|"subscribe"}`` -> ``{"result": "allow"|"deny"|"ignore"}``.
- VerneMQ webhooks: ``POST /broker-auth/vernemq/<hook>`` (or ``/broker-auth/vernemq``,
  dispatched on the ``vernemq-hook`` header) for ``auth_on_register``,
  ``auth_on_publish``, ``auth_on_subscribe`` and their ``_m5`` variants -> ``{"result":
  "ok"}`` or ``{"result": {"error": "not_allowed"}}``; a subscription answers per topic,
  a refused one with QoS 128 (135 for ``_m5``).

Not behind the API token: brokers cannot all send one (VerneMQ's webhooks send no
custom header). Set a shared secret (``broker_auth.http``; ``$EDGEKIT_BROKER_AUTH_SECRET``)
and every call must carry it (``X-Edgekit-Broker-Secret`` header, ``Authorization:
Bearer``, or ``?secret=`` in the webhook URL); without one the endpoints are open, which
tells a caller only yes or no for a 192-bit random password, but reveals which ids
exist: keep them on a private interface. Mountpoints are ignored. Bad bodies get a
400 with one line; nothing here logs a password.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.engine import Connection

from cloud_sync.api.deps import get_conn
from cloud_sync.api.errors import ApiError
from cloud_sync.broker_settings import HttpAuth
from cloud_sync.registry.access import Account, find_account

SECRET_HEADER = "X-Edgekit-Broker-Secret"
MAX_BODY = 1 << 20  # a publish hook carries the payload (VerneMQ): cap what we read
REFUSED_QOS = {False: 128, True: 135}  # MQTT 3 'failure', MQTT 5 'not authorized'

router = APIRouter(prefix="/broker-auth", tags=["broker auth"])


@dataclass(frozen=True)
class Gate:
    """The endpoints' settings and the shared secret (None: open), on ``app.state``."""

    settings: HttpAuth
    secret: str | None

    @classmethod
    def resolve(cls, settings: HttpAuth) -> Gate:
        return cls(settings, settings.secret())


def get_gate(request: Request) -> Gate:
    """The app's gate (made from the cloud config by ``create_app``); checks the secret."""
    gate = getattr(request.app.state, "broker_auth", None) or Gate(HttpAuth(), None)
    if gate.secret is not None:
        given = (request.headers.get(SECRET_HEADER) or _bearer(request)
                 or request.query_params.get("secret") or "")
        if not hmac.compare_digest(given.encode("utf-8"), gate.secret.encode("utf-8")):
            raise ApiError(401, f"missing or wrong broker auth secret; send it as {SECRET_HEADER}"
                                " (or ?secret= in a VerneMQ webhook URL)")
    return gate


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


# ---- request bodies (extra fields are ignored: brokers send more) ----------------------

class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EmqxAuthn(_Body):
    username: str | None = None
    password: str | None = None
    clientid: str | None = None


class EmqxAuthz(_Body):
    username: str | None = None
    clientid: str | None = None
    topic: str
    action: Literal["publish", "subscribe", "all"]


class VerneRegister(_Body):
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    mountpoint: str = ""


class VernePublish(_Body):
    username: str | None = None
    client_id: str | None = None
    mountpoint: str = ""
    topic: str


class VerneTopic(_Body):
    topic: str
    qos: int = 0


class VerneSubscribe(_Body):
    username: str | None = None
    client_id: str | None = None
    mountpoint: str = ""
    topics: list[VerneTopic]


async def json_body(request: Request) -> Any:
    """Dependency: the request's JSON document; 400 with one line when it is not JSON."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"request body over {MAX_BODY} bytes")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON ({getattr(exc, 'msg', 'undecodable')}); "
                            "send the broker's documented JSON body") from None


def _parse(doc: Any, model: type[_Body]) -> Any:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise ApiError(400, f"field '{where}': {err['msg']}") from None


# ---- EMQX --------------------------------------------------------------------------------

@router.post("/emqx/authn")
def emqx_authn(gate: Gate = Depends(get_gate), doc: Any = Depends(json_body),
               conn: Connection = Depends(get_conn)) -> dict[str, Any]:
    """EMQX HTTP authentication: the password against the registry's hash."""
    body = _parse(doc, EmqxAuthn)
    account = find_account(conn, body.username)
    if account is None:
        return {"result": gate.settings.unknown_user, "is_superuser": False}
    return {"result": "allow" if account.password_ok(body.password) else "deny",
            "is_superuser": False}


@router.post("/emqx/authz")
def emqx_authz(gate: Gate = Depends(get_gate), doc: Any = Depends(json_body),
               conn: Connection = Depends(get_conn)) -> dict[str, Any]:
    """EMQX HTTP authorization: the topic against the user's rules."""
    body = _parse(doc, EmqxAuthz)
    account = find_account(conn, body.username)
    if account is None:
        return {"result": gate.settings.unknown_user}
    checks = {"publish": (account.may_publish,), "subscribe": (account.may_subscribe,),
              "all": (account.may_publish, account.may_subscribe)}[body.action]
    return {"result": "allow" if all(check(body.topic) for check in checks) else "deny"}


# ---- VerneMQ -----------------------------------------------------------------------------

NOT_ALLOWED = {"result": {"error": "not_allowed"}}


def _verne_register(body: VerneRegister, account: Account, m5: bool) -> dict[str, Any]:
    return {"result": "ok"} if account.password_ok(body.password) else NOT_ALLOWED


def _verne_publish(body: VernePublish, account: Account, m5: bool) -> dict[str, Any]:
    return {"result": "ok"} if account.may_publish(body.topic) else NOT_ALLOWED


def _verne_subscribe(body: VerneSubscribe, account: Account, m5: bool) -> dict[str, Any]:
    granted = [account.may_subscribe(t.topic) for t in body.topics]
    if all(granted):
        return {"result": "ok"}
    topics = [{"topic": t.topic, "qos": t.qos if ok else REFUSED_QOS[m5]}
              for t, ok in zip(body.topics, granted, strict=True)]
    return {"result": "ok", "modifiers": {"topics": topics}} if m5 else \
        {"result": "ok", "topics": topics}


VERNE_HOOKS: dict[str, tuple[type[_Body], Callable[..., dict[str, Any]]]] = {
    "auth_on_register": (VerneRegister, _verne_register),
    "auth_on_publish": (VernePublish, _verne_publish),
    "auth_on_subscribe": (VerneSubscribe, _verne_subscribe),
}


@router.post("/vernemq")
@router.post("/vernemq/{hook}")
def vernemq_hook(request: Request, hook: str | None = None, gate: Gate = Depends(get_gate),
                 doc: Any = Depends(json_body),
                 conn: Connection = Depends(get_conn)) -> JSONResponse:
    """A VerneMQ webhook (the hook from the path, else the ``vernemq-hook`` header)."""
    name = hook or request.headers.get("vernemq-hook", "")
    base, m5 = (name[:-3], True) if name.endswith("_m5") else (name, False)
    if base not in VERNE_HOOKS:
        raise ApiError(404, f"unknown VerneMQ hook {name[:60]!r}; register one of "
                            f"{', '.join(h + '[_m5]' for h in VERNE_HOOKS)}")
    model, answer = VERNE_HOOKS[base]
    body = _parse(doc, model)
    account = find_account(conn, body.username)
    if account is None:
        doc = {"result": "next"} if gate.settings.unknown_user == "ignore" else NOT_ALLOWED
    else:
        doc = answer(body, account, m5)
    headers = {}
    if doc["result"] == "ok" and gate.settings.cache_max_age_s:
        headers["cache-control"] = f"max-age={gate.settings.cache_max_age_s}"
    return JSONResponse(doc, headers=headers)
