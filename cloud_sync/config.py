"""The cloud side's settings: one typed config, from a file (JSON or YAML) and flags.

Where things live by default: the **data folder** is ``$EDGEKIT_CLOUD_DIR`` if set,
else ``$XDG_DATA_HOME/edgekit/cloud``, else ``~/.local/share/edgekit/cloud``. It
holds the embedded SQLite store (``edgekit.db``), the artifacts folder and the
cloud's own MQTT password (``mqtt-service.password``, mode 0600).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cloud_sync.artifact_settings import ArtifactSettings, LocalArtifacts, artifact_settings
from cloud_sync.broker_settings import BrokerAuth
from cloud_sync.rollouts.settings import RolloutSettings
from cloud_sync.triggers.policy import Triggers
from edge_agent.errors import ConfigError

ENV_DIR = "EDGEKIT_CLOUD_DIR"
DB_FILE = "edgekit.db"
DAY = 86400.0


def default_data_dir() -> Path:
    """``$EDGEKIT_CLOUD_DIR``, else ``$XDG_DATA_HOME/edgekit/cloud``, else ~/.local/share/..."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "edgekit" / "cloud"


def default_db_url(data_dir: Path | None = None) -> str:
    """The embedded store: a SQLite file in the data folder."""
    return f"sqlite:///{(data_dir or default_data_dir()) / DB_FILE}"


class Retention(BaseModel):
    """How much history the store keeps; a background job (leader only, every
    ``interval_s``) deletes what is older or over, in short transactions.

    Telemetry, status and cmd/result rows are capped per device and kind, so one noisy
    device never pushes out another's history; the default telemetry cap is twice what
    a device sends at ``ingest.telemetry_interval_s`` over ``telemetry_max_age_s``.
    Ages and caps left at their defaults are raised to the drift rule's lookback (and
    triggers to the cooldown) where a policy needs more; a value set shorter is a
    config error (see ``CloudConfig``). ``unknown_field_counters`` caps the
    ``unknown_field:*`` counters: the top N by count plus ``unknown_field:other``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    telemetry_max_age_s: float = Field(7 * DAY, gt=0)
    """Age limit of every ``messages`` row (telemetry, status, cmd/result)."""
    telemetry_max_rows_per_device: int = Field(120_960, gt=0)
    status_max_rows_per_device: int = Field(1_000, gt=0)
    results_max_rows_per_device: int = Field(1_000, gt=0)
    samples_max_age_s: float = Field(90 * DAY, gt=0)
    samples_max_rows: int = Field(200_000, gt=0)
    quarantine_max_age_s: float = Field(14 * DAY, gt=0)
    quarantine_max_rows: int = Field(10_000, gt=0)
    gaps_max_age_s: float = Field(30 * DAY, gt=0)
    gaps_max_rows: int = Field(100_000, gt=0)
    drift_scores_max_age_s: float = Field(14 * DAY, gt=0)
    triggers_max_age_s: float = Field(90 * DAY, gt=0)
    """Triggers with their finished actions and the actions' attempts."""
    rollouts_max_age_s: float = Field(90 * DAY, gt=0)
    """Finished rollouts (done, rolled back) with their devices and events."""
    exports_max_age_s: float = Field(30 * DAY, gt=0)
    exports_max_bytes: int = Field(10 * 2 ** 30, gt=0)
    """The samples exports folder (``<data_dir>/exports``): oldest files go first."""
    unknown_field_counters: int = Field(100, ge=1, le=10_000)
    delete_batch_rows: int = Field(4_000, ge=10)
    """The most rows one delete transaction takes; batches shrink while one takes
    longer than ``delete_batch_target_s``, so the write lock is never held long."""
    delete_batch_target_s: float = Field(0.05, gt=0, le=1)
    interval_s: float = Field(300.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, doc: Any) -> Any:
        if isinstance(doc, dict) and "telemetry_max_rows" in doc:
            raise ValueError("telemetry_max_rows is now telemetry_max_rows_per_device (a cap "
                             "per device and kind, so one device cannot push out the others)")
        return doc


class Ingest(BaseModel):
    """How ingest workers batch, acknowledge and judge messages, and when silence means stale.

    A batch is written when it holds ``batch_size`` messages or its oldest is ``batch_age_s``
    old; messages are PUBACKed only after their batch committed, so the broker must let
    ``receive_maximum`` (>= ``batch_size``; sent as MQTT v5 Receive Maximum) be in flight.
    A device is ``stale`` after ``stale_after`` telemetry intervals of silence and
    ``offline`` after ``offline_after``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(500, ge=1, le=20_000)
    batch_age_s: float = Field(0.15, gt=0, le=10)
    receive_maximum: int = Field(1000, ge=1, le=65_535)
    registration_open: bool = True
    group: str = Field("edgekit-ingest", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    session_expiry_s: int = Field(7 * 86400, ge=0, lt=2 ** 32)
    quarantine_payload_bytes: int = Field(4096, ge=0)
    telemetry_interval_s: float = Field(10.0, gt=0)
    stale_after: float = Field(3.0, gt=0)
    offline_after: float = Field(10.0, gt=0)
    state_interval_s: float = Field(5.0, gt=0)
    # the measured speed-ups: msgspec reader of valid messages (ingest/fast_read.py),
    # buffered socket reads and paho's property tables built once (ingest/mqtt.py)
    fast_paths: bool = True

    @model_validator(mode="after")
    def _window_holds_a_batch(self) -> Ingest:
        if self.receive_maximum < self.batch_size:
            raise ValueError(f"receive_maximum ({self.receive_maximum}) must be >= batch_size "
                             f"({self.batch_size}): messages are acknowledged after their "
                             "batch commits")
        if self.offline_after < self.stale_after:
            raise ValueError("offline_after must be >= stale_after")
        return self


class CloudConfig(BaseModel):
    """Everything ``edgekit cloud ...`` needs; unknown keys are errors (typos must not pass)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    db: str | None = None  # None: SQLite in data_dir
    broker: str | None = None  # mqtt://host:port
    http: str = "127.0.0.1:8000"
    artifacts: ArtifactSettings = Field(default_factory=LocalArtifacts)  # a folder or S3
    pubkeys: tuple[Path, ...] = ()
    workers: int = Field(1, ge=1, le=256)
    service_user: str = "edgekit-cloud"
    api_token: str | None = Field(None, repr=False)  # else $EDGEKIT_API_TOKEN
    retention: Retention = Field(default_factory=Retention)
    ingest: Ingest = Field(default_factory=Ingest)
    triggers: Triggers = Field(default_factory=Triggers)
    rollouts: RolloutSettings = Field(default_factory=RolloutSettings)
    broker_auth: BrokerAuth = Field(default_factory=BrokerAuth)  # live broker credentials

    @field_validator("artifacts", mode="before")
    @classmethod
    def _artifacts_path(cls, value: Any) -> Any:
        return artifact_settings(value)

    @model_validator(mode="after")
    def _retention_keeps_the_lookback(self) -> CloudConfig:
        object.__setattr__(self, "retention", bounded_retention(self))
        return self

    @property
    def db_url(self) -> str:
        """The database URL to use: ``db`` if given, else the SQLite file in the data folder."""
        return self.db or default_db_url(self.data_dir)

    @property
    def artifacts_dir(self) -> Path:
        """The local folder of bundles (content-addressed by sha256); with the S3 backend,
        where uploads are spooled before they go to the bucket."""
        local = getattr(self.artifacts, "path", None)
        return local or self.data_dir / "artifacts"

    @property
    def service_password_file(self) -> Path:
        """The cloud's own MQTT password (mode 0600), written when the account is created."""
        return self.data_dir / "mqtt-service.password"

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CloudConfig:
        """Validate a config mapping; ConfigError names the first bad field."""
        if not isinstance(doc, dict):
            raise ConfigError("cloud config must be a mapping of settings")
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "config"
            raise ConfigError(f"cloud config field '{where}': {err['msg']}") from None

    @classmethod
    def load(cls, path: Path | None = None, **flags: Any) -> CloudConfig:
        """The config file (if any) with the flags that were given (not None) on top."""
        doc = read_config_file(path) if path else {}
        doc.update({k: v for k, v in flags.items() if v not in (None, [], ())})
        return cls.from_dict(doc)


def policies(triggers: Triggers) -> list[Any]:
    """Every trigger policy in force: the default, then each fleet's (the default with the
    fleet's overrides on top)."""
    return [triggers.default] + [triggers.policy_for(f) for f in triggers.fleets]


def drift_lookback_s(triggers: Triggers) -> float:
    """How far back the drift controller reads telemetry: ``window_s x (n + 1)`` of the
    longest policy (the span ``cloud_sync.triggers.controller`` reads)."""
    return max(p.window_s * (p.n + 1) for p in policies(triggers))


def _at_least(retention: Retention, given: set[str], name: str, least: float,
              why: str) -> Retention:
    value = getattr(retention, name)
    if value >= least:
        return retention
    if name in given:  # a ConfigError is not a ValueError: pydantic lets it through as is
        raise ConfigError(f"cloud config field 'retention.{name}' ({value:g}) keeps less than "
                          f"{why}; set it to at least {least:g} or leave it out")
    return retention.model_copy(update={name: type(value)(least)})


def bounded_retention(cfg: CloudConfig) -> Retention:
    """``cfg.retention`` with its defaults raised to what the drift rule and the trigger
    cooldown need (the telemetry cap following the age and the telemetry interval);
    ConfigError, one line, where a value the user set keeps less."""
    retention, given = cfg.retention, set(cfg.retention.model_fields_set)
    lookback, interval = drift_lookback_s(cfg.triggers), cfg.ingest.telemetry_interval_s
    retention = _at_least(retention, given, "telemetry_max_age_s", lookback,
                          f"the drift rule's lookback ({lookback:g} s: window_s x (n + 1))")
    retention = _at_least(retention, given, "triggers_max_age_s",
                          max(p.cooldown_s for p in policies(cfg.triggers)),
                          "the triggers' cooldown_s (the last trigger holds back the next)")
    rows = "telemetry_max_rows_per_device"
    if rows not in given:
        least = math.ceil(2 * retention.telemetry_max_age_s / interval)
        return retention.model_copy(update={rows: least})
    return _at_least(retention, given, rows, math.ceil(lookback / interval),
                     f"a device's telemetry over the drift rule's lookback ({lookback:g} s at "
                     f"ingest.telemetry_interval_s {interval:g} s)")


def read_config_file(path: Path) -> dict[str, Any]:
    """A config file as a dict: YAML for .yaml/.yml, else JSON."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") \
                from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"config {path} is not valid JSON: {exc}") from None
