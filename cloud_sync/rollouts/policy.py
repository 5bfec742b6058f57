"""A rollout's policy: canary size, bake time, waves, offline handling, timeouts and the
abort thresholds (typed; stored with the rollout as JSON)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Thresholds(BaseModel):
    """When a wave is judged bad. Failure percentage in AWS IoT Jobs terms (over at least
    ``min_finished`` finished devices), then model health, canary vs control."""

    model_config = ConfigDict(extra="forbid")

    max_failure_pct: float = Field(0.0, ge=0, le=100)
    min_finished: int = Field(1, ge=1)
    min_devices: int = Field(1, ge=1)  # rollout devices with telemetry before judging health
    min_inferences: int = Field(30, ge=1)  # their inferences in the window
    max_non_finite_rate: float = Field(0.01, ge=0)
    max_error_rate_increase: float = Field(0.05, ge=0)
    max_p95_ratio: float = Field(3.0, gt=0)
    p95_floor_ms: float = Field(2.0, ge=0)  # slower by less than this is timer noise
    max_confidence_drop: float = Field(0.15, ge=0)
    max_class_distance: float = Field(0.5, ge=0, le=1)
    max_missed_heartbeats: float = Field(6.0, gt=0)
    # detectors (issue 19): canary vs control, frames as the unit
    min_detections_ratio: float = Field(1 / 3, ge=0)  # fewer detections per frame: halt
    max_detections_ratio: float = Field(3.0, gt=0)  # more: halt (boxes everywhere)
    max_score_drop: float = Field(0.15, ge=0, le=1)
    max_empty_rate_increase: float = Field(0.3, ge=0, le=1)
    health_alpha: float = Field(0.01, gt=0, lt=1)  # a task figure fails only if significant

    @model_validator(mode="after")
    def _ratios(self) -> Thresholds:
        if self.min_detections_ratio >= self.max_detections_ratio:
            raise ValueError(f"min_detections_ratio ({self.min_detections_ratio:g}) must be "
                             f"below max_detections_ratio ({self.max_detections_ratio:g})")
        return self


class RolloutPolicy(BaseModel):
    """How a rollout proceeds; ``waves`` are cumulative percentages of the target ending
    at 100, after the canary (``canary_percent`` or ``canary_count``)."""

    model_config = ConfigDict(extra="forbid")

    canary_percent: float | None = Field(None, gt=0, le=100)
    canary_count: int | None = Field(None, ge=1)
    bake_s: float = Field(300.0, ge=0)
    max_bake_s: float | None = Field(None, gt=0)  # None: 4 x bake_s (+60 s), then halt
    waves: list[float] = Field(default_factory=lambda: [100.0])
    offline: Literal["wait", "skip", "fail"] = "wait"
    offline_wait_s: float = Field(3600.0, gt=0)
    command_ttl_s: float = Field(600.0, gt=0)
    device_timeout_s: float = Field(900.0, gt=0)
    heartbeat_s: float = Field(10.0, gt=0)
    thresholds: Thresholds = Field(default_factory=Thresholds)

    @model_validator(mode="after")
    def _check(self) -> RolloutPolicy:
        if self.canary_percent is None and self.canary_count is None:
            self.canary_percent = 10.0
        steps = list(zip([0.0, *self.waves], self.waves, strict=False))
        if not self.waves or self.waves[-1] != 100 or any(b <= a for a, b in steps):
            raise ValueError("waves must be increasing cumulative percentages ending at 100")
        if self.device_timeout_s <= self.command_ttl_s:
            raise ValueError("device_timeout_s must be longer than command_ttl_s")
        return self

    @property
    def bake_limit_s(self) -> float:
        """How long a bake may wait for enough data before the rollout halts."""
        return self.max_bake_s or 4 * self.bake_s + 60.0

    def canary_size(self, total: int) -> int:
        """Devices in the canary, at least 1 and at most ``total``."""
        n = self.canary_count or math.ceil((self.canary_percent or 0) * total / 100)
        return max(1, min(total, n))

    def plan(self, total: int) -> list[int]:
        """Cumulative device counts per wave: [canary, wave 1, ..., total]."""
        counts = [self.canary_size(total)]
        for pct in self.waves:
            counts.append(max(counts[-1], math.ceil(pct * total / 100)))
        return [c for i, c in enumerate(counts) if i == 0 or c > counts[i - 1]] or [total]


def parse_canary(text: str) -> dict[str, float | int]:
    """``10%`` -> canary_percent 10; ``3`` -> canary_count 3 (ValueError otherwise)."""
    text = text.strip()
    if text.endswith("%"):
        return {"canary_percent": float(text[:-1])}
    return {"canary_count": int(text)}
