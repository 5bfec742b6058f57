"""Settings for changing broker credentials without a reload (``broker_auth`` in the cloud
config): Mosquitto's dynamic-security plugin (pushed to), and the HTTP auth endpoints
that EMQX and VerneMQ ask (pulled from).

Secrets are never in the config itself: the dynsec admin password and the HTTP
endpoints' shared secret come from an environment variable or a file (mode 0600).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.errors import ConfigError

ADMIN_PASSWORD_ENV = "EDGEKIT_DYNSEC_PASSWORD"
AUTH_SECRET_ENV = "EDGEKIT_BROKER_AUTH_SECRET"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class Dynsec(BaseModel):
    """Drive Mosquitto's dynamic-security plugin from ``cloud device add/remove``.

    ``enabled`` makes every add/remove also create/delete the device's broker client and
    role over ``$CONTROL/dynamic-security/v1`` (``--dynsec/--no-dynsec`` override it);
    ``broker`` defaults to the cloud config's ``broker``. The admin password is
    ``$<admin_password_env>`` if set, else the first line of ``admin_password_file``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    broker: str | None = None  # mqtt://host:port or mqtts://; None: the config's broker
    admin_user: str = Field("admin", min_length=1, max_length=256)
    admin_password_file: Path | None = None
    admin_password_env: str = Field(ADMIN_PASSWORD_ENV, pattern=_ENV_NAME)
    tls_ca: Path | None = None  # for mqtts:// with a private CA
    timeout_s: float = Field(10.0, gt=0, le=300)
    role_prefix: str = Field("edgekit-", pattern=r"^[A-Za-z0-9_.-]{0,32}$")

    def admin_password(self, env: Mapping[str, str] | None = None) -> str:
        """The admin password (env first, then the file); ConfigError says how to set it."""
        env = os.environ if env is None else env
        if env.get(self.admin_password_env):
            return env[self.admin_password_env]
        if self.admin_password_file is None:
            raise ConfigError(f"no dynsec admin password: set {self.admin_password_env} or "
                              "broker_auth.dynsec.admin_password_file in the cloud config")
        return _first_line(self.admin_password_file, "dynsec admin password")


class HttpAuth(BaseModel):
    """The HTTP auth endpoints brokers call (``/broker-auth/...``).

    When a secret is set (``$<secret_env>`` or ``secret_file``), every call must carry it
    (header ``X-Edgekit-Broker-Secret``, ``Authorization: Bearer``, or ``?secret=`` for
    VerneMQ, whose webhooks send no custom header). ``unknown_user`` is the answer for a
    user the registry does not know (``ignore``: let the broker's next authenticator
    decide). ``cache_max_age_s`` > 0 lets VerneMQ cache allowed answers that long (a
    removed device may then keep access until the entry expires).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret_env: str = Field(AUTH_SECRET_ENV, pattern=_ENV_NAME)
    secret_file: Path | None = None
    unknown_user: Literal["deny", "ignore"] = "deny"
    cache_max_age_s: int = Field(0, ge=0, le=86400)

    def secret(self, env: Mapping[str, str] | None = None) -> str | None:
        """The shared secret, or None when none is configured."""
        env = os.environ if env is None else env
        if env.get(self.secret_env):
            return env[self.secret_env]
        if self.secret_file is None:
            return None
        return _first_line(self.secret_file, "broker auth secret")


class BrokerAuth(BaseModel):
    """How the broker learns device credentials without a reload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dynsec: Dynsec = Field(default_factory=Dynsec)
    http: HttpAuth = Field(default_factory=HttpAuth)


def _first_line(path: Path, what: str) -> str:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} from {path} ({exc.strerror}); "
                          "fix the path or its permissions") from None
    if not lines or not lines[0].strip():
        raise ConfigError(f"the {what} file {path} is empty; write the secret on its first line")
    return lines[0].strip()
