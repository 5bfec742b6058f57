"""The agent's settings: one typed config, from a file (JSON, or YAML via the CLI) and flags."""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_agent.errors import ConfigError, ProtocolError
from edge_agent.protocol import check_id


@dataclass
class UpdatePolicy:
    """Limits of an over-the-air update and the probation that follows the switch."""

    max_download_bytes: int = 512 << 20
    download_timeout_s: float = 30.0
    download_retries: int = 5
    probation_inferences: int = 200
    probation_seconds: float = 120.0
    max_error_rate: float = 0.02
    max_latency_ratio: float = 2.0
    # A slower model is a regression only when it also adds this much per inference:
    # a 0.02 ms model measured at 0.15 ms is over any ratio, yet nothing a device feels,
    # and on a busy core such sub-millisecond medians are mostly scheduling noise.
    min_latency_regression_ms: float = 0.5
    min_inferences_for_rates: int = 20


@dataclass
class AgentConfig:
    """Everything ``edgekit agent run`` needs; ``from_dict`` validates it with clear errors."""

    device_id: str
    fleet: str
    state_dir: str
    pubkeys: list[str]
    bundle: str | None = None
    profile: str | None = None
    broker: str | None = None  # mqtt://host:port or mqtts://host:port; None = offline
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    http: str | None = None  # "127.0.0.1:8080"; None = no HTTP API
    http_token: str | None = None  # bearer token; else http_token_file, else $EDGEKIT_AGENT_TOKEN
    http_token_file: str | None = None
    measure: bool = True  # POST /v1/measure: time candidate models sent by a build
    measure_max_bytes: int = 64 << 20
    measure_max_runs: int = 10_000
    telemetry_interval_s: float = 10.0
    sample_rate_per_min: float = 6.0
    sample_max_bytes: int = 64 << 10
    low_confidence: float = 0.5
    max_input_bytes: int = 64 << 20
    # Inputs up to this size are checked for NaN/inf before the run (a few µs: they are in
    # cache). A larger one is read again only when the model's outputs are not finite: the
    # full read of a 640x640 RGB frame costs ~0.3 ms from memory, more than everything else
    # the agent adds; a NaN that the model's arithmetic drops then goes unreported. Set it
    # to max_input_bytes to check every input first.
    finite_check_before_bytes: int = 1 << 20
    outbox_max_bytes: int = 64 << 20
    outbox_max_age_s: float = 7 * 86400.0
    max_inflight: int = 32
    update: UpdatePolicy = field(default_factory=UpdatePolicy)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AgentConfig:
        """Build and validate a config; unknown keys are errors (typos must not pass)."""
        if not isinstance(doc, dict):
            raise ConfigError("agent config must be a mapping of settings")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigError(f"unknown agent setting '{unknown[0]}'; "
                              f"known: {', '.join(sorted(known))}")
        values = dict(doc)
        values["update"] = _update_policy(values.get("update") or {})
        try:
            cfg = cls(**values)
        except TypeError as exc:
            raise ConfigError(f"agent config: {exc}") from exc
        cfg.validate()
        return cfg

    @classmethod
    def from_json_file(cls, path: Path) -> AgentConfig:
        """Read a JSON config file."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read agent config {path}: {exc}") from exc

    def validate(self) -> None:
        """Check ids, numbers and paths; raise ConfigError naming the setting."""
        try:
            check_id(self.device_id, "device_id")
            check_id(self.fleet, "fleet")
        except ProtocolError as exc:
            raise ConfigError(str(exc)) from exc
        if not self.pubkeys:
            raise ConfigError("no trusted public key; set 'pubkeys' (or --pubkey)")
        for name in ("telemetry_interval_s", "sample_max_bytes", "outbox_max_bytes",
                     "max_inflight", "max_input_bytes", "measure_max_bytes", "measure_max_runs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"setting '{name}' must be > 0, got {getattr(self, name)}")
        if self.finite_check_before_bytes < 0:
            raise ConfigError("setting 'finite_check_before_bytes' must be >= 0, got "
                              f"{self.finite_check_before_bytes}")
        if not 0.0 <= self.low_confidence <= 1.0:
            raise ConfigError("setting 'low_confidence' must be between 0 and 1")
        if self.http is not None:
            check_http_exposure(self.http, self.resolved_http_token())
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("mTLS needs both 'tls_cert' and 'tls_key'")

    def resolved_http_token(self) -> str | None:
        """The HTTP API's bearer token: ``http_token``, the file's, or $EDGEKIT_AGENT_TOKEN."""
        token = self.http_token
        if token is None and self.http_token_file:
            try:
                token = Path(self.http_token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read http_token_file {self.http_token_file}: "
                                  f"{exc.strerror}") from exc
        if token is None:
            token = os.environ.get(TOKEN_ENV) or None
        if token is not None and len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"the HTTP token must be at least {MIN_TOKEN_CHARS} characters; "
                              f"make one with: {TOKEN_HINT}")
        return token

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready), e.g. to write a config file."""
        return asdict(self)


def _update_policy(doc: dict[str, Any]) -> UpdatePolicy:
    known = {f.name for f in fields(UpdatePolicy)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"unknown update setting '{unknown[0]}'; "
                          f"known: {', '.join(sorted(known))}")
    return UpdatePolicy(**doc)


TOKEN_ENV = "EDGEKIT_AGENT_TOKEN"
MIN_TOKEN_CHARS = 16
TOKEN_HINT = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_http_exposure(address: str, token: str | None) -> None:
    """Refuse an HTTP API reachable beyond this machine without a token (ConfigError)."""
    host, _port = parse_host_port(address)
    if token is None and not is_loopback(host):
        raise ConfigError(f"the HTTP API on {address} is reachable beyond this machine and "
                          f"needs a token: set 'http_token' or 'http_token_file' "
                          f"(--http-token-file) or ${TOKEN_ENV}; make one with: {TOKEN_HINT}")


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


def parse_host_port(text: str) -> tuple:
    """'127.0.0.1:8080' -> ('127.0.0.1', 8080), with a clear error otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"address {text!r} must look like 127.0.0.1:8080")
    return host, int(port)
