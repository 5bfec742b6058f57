"""Trigger policies: when drift fires a retraining trigger, and what the trigger then does.

The default policy (``Triggers.default``) applies to every fleet with no entry in
``Triggers.fleets``; a fleet's entry overrides only the keys it names. Defaults:
windows of 10 minutes, drift on at least 2 of the last 3 windows of at least 2
devices *or* of the pooled fleet, one trigger per (fleet, model, version) a day,
and one action: the MQTT event on ``edgekit/<fleet>/_events/trigger`` (the trigger
row is always recorded first).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cloud_sync.drift import DriftConfig, DriftError

DAY = 86400.0


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommandAction(_Action):
    """Run a program (argv, no shell) with the trigger in its environment."""

    kind: Literal["command"] = "command"
    command: tuple[str, ...] = Field(..., min_length=1)
    timeout_s: float = Field(600.0, gt=0, le=3000)
    """Killed after this; below the outbox's claim lease (1 h), so a running command is
    never taken for a dead one. Start longer jobs in the background."""
    env_pass: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], ...] = ()
    """Names of the cloud's environment variables the command also gets (e.g. a cloud
    storage login its training job needs). It always gets PATH, HOME, LANG and the
    trigger's EDGEKIT_* variables, and nothing else: not the API token, the MQTT password
    or the artifact URL secret, unless named here."""

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            import shlex

            return tuple(shlex.split(value))
        return value


class WebhookAction(_Action):
    """POST the trigger as JSON, signed with HMAC-SHA256 of the body."""

    kind: Literal["webhook"] = "webhook"
    url: str = Field(..., pattern=r"^https?://")
    secret: str | None = Field(None, repr=False)
    secret_env: str | None = None
    """Name of an environment variable holding the secret (instead of ``secret``)."""
    timeout_s: float = Field(10.0, gt=0)


class MqttAction(_Action):
    """Publish the trigger at QoS 1 on ``edgekit/<fleet>/_events/trigger``."""

    kind: Literal["mqtt"] = "mqtt"
    timeout_s: float = Field(10.0, gt=0)


Action = Annotated[CommandAction | WebhookAction | MqttAction, Field(discriminator="kind")]


class TriggerPolicy(BaseModel):
    """When one (fleet, model, version) fires, and what it does then."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: float = Field(600.0, gt=0)
    k: int = Field(2, ge=1)
    n: int = Field(3, ge=1)
    min_devices: int = Field(2, ge=1)
    fleet_wide: bool = True
    """Also fire when the pooled fleet window drifts on k of n windows."""
    kinds: tuple[Literal["input", "output", "confidence"], ...] = Field(
        ("input", "output", "confidence"), min_length=1)
    """The drift kinds that count: a window drifts when one of these does. Leave out
    ``input`` to retrain only when the model's answers move (class mix, confidence), not
    when inputs shift in ways the model takes in its stride (e.g. after it was retrained
    on a mixture of old and new inputs, each device differs from the mixture)."""
    cooldown_s: float = Field(DAY, gt=0)
    drift: dict[str, Any] = Field(default_factory=dict)
    """``cloud_sync.drift.DriftConfig`` settings (alpha, min_inferences, floors...)."""
    actions: tuple[Action, ...] = (MqttAction(),)
    max_attempts: int = Field(5, ge=1, le=100)
    backoff_s: float = Field(10.0, gt=0)
    backoff_max_s: float = Field(600.0, gt=0)
    export_max_samples: int = Field(10_000, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> TriggerPolicy:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) must be <= n ({self.n})")
        try:
            self.drift_config()
        except DriftError as exc:
            raise ValueError(str(exc)) from None
        return self

    def drift_config(self) -> DriftConfig:
        """The drift statistics' settings."""
        return DriftConfig.from_dict(self.drift)


class Triggers(BaseModel):
    """The ``triggers`` section of the cloud config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    interval_s: float = Field(60.0, gt=0)
    """How often the controller scores windows and the outbox is worked (leader only)."""
    device_windows_per_step: int = Field(2000, ge=1)
    """Device windows one drift step scores at most; with more waiting, the next step
    runs within a second (a step stays short, and a fleet's window is scored soon after
    it closes)."""
    default: TriggerPolicy = Field(default_factory=TriggerPolicy)
    fleets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-fleet overrides of ``default`` (only the keys given)."""

    @model_validator(mode="after")
    def _fleets_valid(self) -> Triggers:
        for fleet in self.fleets:
            try:
                self.policy_for(fleet)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in ("fleets", fleet, *err["loc"]))
                raise ValueError(f"{where}: {err['msg']}") from None
        return self

    def policy_for(self, fleet: str) -> TriggerPolicy:
        """The default policy with ``fleet``'s overrides on top."""
        over = self.fleets.get(fleet)
        if not over:
            return self.default
        return TriggerPolicy.model_validate({**self.default.model_dump(), **over})
