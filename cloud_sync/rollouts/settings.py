"""The cloud's rollout settings (``rollouts:`` in the cloud config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RolloutSettings(BaseModel):
    """How often the leader advances rollouts, and the base of the artifact URLs that
    update commands carry (None: ``http://<http>`` of the cloud config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    interval_s: float = Field(2.0, gt=0)
    artifact_base: str | None = None
