"""Where and how the agent reaches its MQTT broker: URL, credentials, TLS, timeouts."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote, urlsplit

from edge_agent.errors import ConfigError, first_line

_SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}


@dataclass
class BrokerConfig:
    """Where and how to reach the broker. ``tls_cert`` + ``tls_key`` = mutual TLS.

    TLS is used when ``tls`` is set (``mqtts://``) or any ``tls_*`` file is given;
    without ``tls_ca`` the system's CA certificates verify the broker.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    session_expiry_s: int = 7 * 86400
    tls: bool = False
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0

    def __post_init__(self) -> None:
        for name, (ok, allowed) in _LIMITS.items():
            value = getattr(self, name)
            if not ok(value, self):
                raise ConfigError(f"broker setting '{name}' is {value!r}; it must be {allowed}")

    @classmethod
    def from_url(cls, url: str, **kw: object) -> BrokerConfig:
        """``mqtt://[user:pass@]host[:port]`` or ``mqtts://`` (TLS); non-None keywords override."""
        shown = _redact(url)
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in _SCHEMES:
            raise ConfigError(f"broker URL {shown!r} must look like mqtt://HOST[:PORT] or "
                              "mqtts://HOST[:PORT]")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"broker URL {shown!r} has an invalid port; use 1..65535") from None
        if not parts.hostname:
            raise ConfigError(f"broker URL {shown!r} has no host; use {parts.scheme}://HOST[:PORT]")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"broker URL {shown!r} must not have a path, query or fragment")
        default_port, tls = _SCHEMES[parts.scheme]
        fields: dict[str, object] = dict(
            host=parts.hostname, port=port or default_port, tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None)
        fields.update((key, value) for key, value in kw.items() if value is not None)
        return cls(**fields)  # type: ignore[arg-type]

    @property
    def uses_tls(self) -> bool:
        """Whether connections are wrapped in TLS."""
        return bool(self.tls or self.tls_ca or self.tls_cert or self.tls_key)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for this broker (None without TLS); ConfigError names the bad file."""
        if not self.uses_tls:
            return None
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key must be given together (mutual TLS) or "
                              "not at all")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.tls_ca:
            _load_tls_file(context.load_verify_locations, "CA file", self.tls_ca)
        else:
            context.load_default_certs()
        if self.tls_cert and self.tls_key:
            _load_tls_file(lambda cert: context.load_cert_chain(cert, self.tls_key),
                           "client certificate/key", self.tls_cert, self.tls_key)
        return context


def is_int(value: object) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: object) -> bool:
    return is_int(value) or isinstance(value, float)


_LIMITS: dict[str, tuple[Callable[[object, BrokerConfig], bool], str]] = {
    "host": (lambda v, c: isinstance(v, str) and bool(v), "a host name"),
    "port": (lambda v, c: is_int(v) and 0 < v < 65536, "1..65535"),
    "keepalive_s": (lambda v, c: is_int(v) and 5 <= v <= 65535, "5..65535 seconds"),
    "connect_timeout_s": (lambda v, c: _is_num(v) and v > 0, "> 0 seconds"),
    "session_expiry_s": (lambda v, c: is_int(v) and 0 <= v < 2 ** 32, "0..4294967295 seconds"),
    "reconnect_min_s": (lambda v, c: _is_num(v) and v > 0, "> 0 seconds"),
    "reconnect_max_s": (lambda v, c: _is_num(v) and v >= c.reconnect_min_s,
                        ">= reconnect_min_s"),
}


def _redact(url: object) -> str:
    """The URL without its password, for error messages and logs."""
    text = str(url)
    if "@" in text and "://" in text:
        scheme, rest = text.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return text


def _load_tls_file(load: Callable[[str], None], what: str, path: str, *others: str) -> None:
    for name in (path, *others):
        if not os.path.isfile(name):
            raise ConfigError(f"TLS {what}: {name} does not exist or is not a file")
    try:
        load(path)
    except (ssl.SSLError, ValueError, OSError) as exc:
        reason = getattr(exc, "reason", None) or first_line(exc)
        raise ConfigError(f"TLS {what} {' + '.join((path, *others))} cannot be used: "
                          f"{reason}") from exc
